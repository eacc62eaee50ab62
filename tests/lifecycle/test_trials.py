"""Free trials (T1-T12, E29-E32), the fingerprint constraint under threads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from autumn_core import Autumn, CustomerData, FreeTrial, Item, ManualClock, Price, Product
from autumn_memory import MemoryGateway
from tests.lifecycle.conftest import T0, D, Factory, base_products, msgs, statuses, totals


def test_e29_card_required_trial_with_a_card(billing: Autumn) -> None:
    preview = billing.preview_attach("c", "pro-trial")
    assert (preview.due_now, preview.next_cycle_at, preview.next_cycle_total) == (
        D(0),
        T0 + timedelta(days=7),
        D("20.00"),
    )
    result = billing.attach("c", "pro-trial")
    assert result.trial_ends_at == T0 + timedelta(days=7)
    assert result.product is not None and result.product.status == "trialing"
    assert result.invoice is None
    assert [i for i in billing.invoices.list("c") if i.status == "paid"] == []


def test_t7_t8_conversion_charges_the_first_period_at_the_trial_end(
    billing: Autumn, clock: ManualClock
) -> None:
    billing.attach("c", "pro-trial")
    clock.advance(days=7)
    c = billing.customers.get("c")
    pro = next(p for p in c.products if p.id == "pro-trial")
    assert pro.status == "active"
    assert (pro.current_period_start, pro.current_period_end) == (
        T0 + timedelta(days=7),
        T0 + timedelta(days=7 + 30),
    )
    assert totals(billing) == [D("20.00")]


def test_t6_trial_end_dates() -> None:
    from autumn_core.rules.periods import trial_end

    assert trial_end(datetime(2025, 3, 10, 9, tzinfo=UTC), 14, "day") == datetime(
        2025, 3, 24, 9, tzinfo=UTC
    )
    assert trial_end(datetime(2025, 1, 31, tzinfo=UTC), 1, "month") == datetime(
        2025, 2, 28, tzinfo=UTC
    )
    assert trial_end(datetime(2024, 1, 31, tzinfo=UTC), 1, "month") == datetime(
        2024, 2, 29, tzinfo=UTC
    )


def test_e30_downgrade_while_trialing_is_scheduled_for_the_trial_end(billing: Autumn) -> None:
    billing.attach("c", "premium-trial")
    result = billing.attach("c", "pro-trial")
    assert result.scenario == "downgrade"
    c = billing.customers.get("c")
    premium = next(p for p in c.products if p.id == "premium-trial")
    pro = next(p for p in c.products if p.id == "pro-trial")
    assert (premium.status, premium.ends_at) == ("trialing", T0 + timedelta(days=14))
    assert premium.canceled_at == T0
    assert (pro.status, pro.started_at, pro.trial_ends_at) == (
        "scheduled",
        T0 + timedelta(days=14),
        None,
    )


def test_e31_add_on_joins_the_trial_and_converts_together(
    billing: Autumn, clock: ManualClock
) -> None:
    billing.attach("c", "pro-trial")
    result = billing.attach("c", "addon20")
    assert result.trial_ends_at == T0 + timedelta(days=7)
    assert statuses(billing) == {"pro-trial": "trialing", "addon20": "trialing"}
    clock.advance(days=7, seconds=1)
    assert totals(billing) == [D("40.00")]


def test_e31_add_on_on_a_paid_cycle_is_charged_at_once_without_trial(billing: Autumn) -> None:
    billing.attach("c", "pro")
    result = billing.attach("c", "addon20-trial")
    assert result.trial_ends_at is None
    assert result.invoice is not None and result.invoice.total == D("20.00")


def test_e32_trial_usage_is_not_billed_at_conversion(make: Factory, clock: ManualClock) -> None:
    billing = make(
        [
            Product(
                "t",
                price=Price(20),
                free_trial=FreeTrial(7),
                items=[Item.priced("messages", included=100, price="0.10", billing="usage")],
            )
        ]
    )
    billing.attach("c", "t")
    billing.track("c", "messages", value=150)
    clock.advance(days=7, seconds=1)
    assert totals(billing) == [D("20.00")]
    assert billing.customers.get("c").features["messages"].usage == 150


def test_t3_one_trial_per_customer_and_product_even_after_cancel(billing: Autumn) -> None:
    assert billing.attach("c", "pro-trial").trial_ends_at is not None
    billing.cancel("c", "pro-trial", immediately=True)
    again = billing.attach("c", "pro-trial")
    assert again.trial_ends_at is None
    assert again.invoice is not None and again.invoice.total == D("20.00")


def test_t3_each_entity_may_trial_once(billing: Autumn) -> None:
    billing.entities.create("c", "e1", "users")
    billing.entities.create("c", "e2", "users")
    assert billing.attach("c", "pro-trial", entity_id="e1").trial_ends_at is not None
    assert billing.attach("c", "pro-trial", entity_id="e2").trial_ends_at is not None


def test_t4_unique_fingerprint_across_customers(make: Factory) -> None:
    products = [
        Product(
            "t", price=Price(20), free_trial=FreeTrial(7, unique_fingerprint=True), items=[msgs(1)]
        )
    ]
    billing = make(products)
    fp = CustomerData(fingerprint="device-1")
    assert billing.attach("a", "t", customer_data=fp).trial_ends_at is not None
    assert billing.attach("b", "t", customer_data=fp).trial_ends_at is None
    # a customer without a fingerprint is limited only per customer
    assert billing.attach("n", "t").trial_ends_at is not None


def test_t1_free_trial_none_skips_and_a_given_trial_bypasses_dedup(billing: Autumn) -> None:
    assert billing.attach("a", "pro-trial", free_trial=None).trial_ends_at is None
    billing.attach("b", "pro-trial")
    billing.cancel("b", "pro-trial", immediately=True)
    result = billing.attach("b", "pro-trial", free_trial=FreeTrial(3))
    assert result.trial_ends_at == T0 + timedelta(days=3)


def test_t7_card_less_trial_ends_into_the_free_default_without_a_card(
    make: Factory, clock: ManualClock
) -> None:
    products = [
        *base_products(),
        Product(
            "cl",
            price=Price(20),
            free_trial=FreeTrial(7, card_required=False),
            items=[msgs(500)],
        ),
    ]
    billing = make(products, gateway=MemoryGateway(card_on_file=False))
    billing.customers.create("c")
    billing.attach("c", "cl")
    clock.advance(days=7, seconds=1)
    assert statuses(billing) == {"free": "active"}
    assert billing.invoices.list("c") == []


def test_t7_card_less_trial_converts_without_a_gateway(make: Factory, clock: ManualClock) -> None:
    products = [
        Product(
            "cl", price=Price(20), free_trial=FreeTrial(7, card_required=False), items=[msgs(5)]
        )
    ]
    billing = make(products, gateway=None)
    billing.attach("c", "cl")
    clock.advance(days=8)
    assert statuses(billing) == {"cl": "active"}
    assert totals(billing) == [D("20.00")]


def test_t10_upgrade_while_trialing_to_a_trial_product_starts_a_fresh_trial(
    make: Factory, clock: ManualClock
) -> None:
    products = [
        Product("ten", price=Price(10), free_trial=FreeTrial(10), items=[msgs(1)]),
        Product("tw1", price=Price(30), free_trial=FreeTrial(21), items=[msgs(2)]),
        Product("plain", price=Price(40), items=[msgs(3)]),
    ]
    billing = make(products)
    billing.attach("c", "ten")
    clock.advance(days=4)
    result = billing.attach("c", "tw1")
    assert result.scenario == "upgrade"
    assert result.trial_ends_at == T0 + timedelta(days=25)
    assert result.invoice is None
    # to a product without a trial: the trial ends and the full first period is charged now
    clock.advance(days=1)
    result = billing.attach("c", "plain")
    assert result.invoice is not None and result.invoice.total == D("40.00")
    assert result.product is not None and result.product.current_period_start == T0 + timedelta(
        days=5
    )


def test_t12_a_free_product_with_a_trial_simply_expires(make: Factory, clock: ManualClock) -> None:
    billing = make([Product("ft", add_on=True, free_trial=FreeTrial(3), items=[msgs(9)])])
    billing.attach("c", "ft")
    assert statuses(billing) == {"ft": "trialing"}
    clock.advance(days=3)
    assert statuses(billing) == {}


def test_s8_free_rows_of_a_trial_product_first_reset_at_the_trial_end(make: Factory) -> None:
    # a new trial product (no product replaced, whose reset anchor would be kept: S1)
    billing = make([p for p in base_products() if p.id != "free"])
    billing.attach("c", "pro-trial")
    b = billing.customers.get("c").features["messages"]
    assert b.next_reset_at == T0 + timedelta(days=7)


def test_t5_eight_threads_one_fingerprint_exactly_one_trial(make: Factory) -> None:
    products = [
        Product(
            "t",
            price=Price(20),
            free_trial=FreeTrial(7, unique_fingerprint=True, card_required=False),
            items=[msgs(1)],
        )
    ]
    billing = make(products)
    barrier = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        r = billing.attach(f"u{i}", "t", customer_data=CustomerData(fingerprint="shared"))
        with lock:
            results.append(r.trial_ends_at is not None)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert results.count(True) == 1
