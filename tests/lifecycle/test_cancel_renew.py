"""Cancel/uncancel (X1-X6, E33), renewals (S7, E20, E21), paid seats (P7, E17, E18)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from autumn_core import (
    Autumn,
    Item,
    ManualClock,
    Price,
    Product,
    ProductNotFound,
    Rollover,
)
from autumn_memory import MemoryGateway
from tests.lifecycle.conftest import T0, D, Factory, base_products, msgs, statuses, totals

MAY = T0.replace(month=5)


def usage_plan(**kw: object) -> Product:
    return Product(
        "metered",
        price=Price(20),
        items=[Item.priced("messages", included=200, price="0.20", billing="usage", **kw)],  # type: ignore[arg-type]
    )


# -- cancel -------------------------------------------------------------------------------------
def test_e33_immediate_cancel_activates_the_free_default(billing: Autumn) -> None:
    billing.attach("c", "pro")
    ended = billing.cancel("c", "pro", immediately=True)
    assert ended.status == "expired"
    assert statuses(billing) == {"free": "active"}
    # canceling the free default itself removes it and re-attaches nothing (DF5)
    billing.cancel("c", "free", immediately=True)
    assert statuses(billing) == {}


def test_x3_immediate_cancel_credits_unused_time(make: Factory, clock: ManualClock) -> None:
    billing = make([Product("p36", price=Price(36), items=[msgs(1)])])
    billing.attach("c", "p36")
    clock.advance(days=10)
    billing.cancel("c", "p36", immediately=True)
    invoices = billing.invoices.list("c")
    assert [i.total for i in invoices] == [D("36.00"), D("-24.00")]
    assert invoices[1].status == "paid"


def test_x3_immediate_cancel_does_not_bill_overage(make: Factory, clock: ManualClock) -> None:
    billing = make([usage_plan()])
    billing.attach("c", "metered")
    billing.track("c", "messages", value=350)
    billing.cancel("c", "metered", immediately=True)
    assert totals(billing) == [D("20.00"), D("-20.00")]


def test_x2_x4_end_of_cycle_cancel_bills_the_final_overage_once(
    make: Factory, clock: ManualClock
) -> None:
    billing = make([*base_products(), usage_plan()])
    billing.attach("c", "metered")
    billing.track("c", "messages", value=350)
    canceled = billing.cancel("c", "metered")
    assert (canceled.status, canceled.canceled_at, canceled.ends_at) == ("active", T0, MAY)
    assert statuses(billing) == {"metered": "active", "free": "scheduled"}
    clock.set(MAY + timedelta(seconds=1))
    assert statuses(billing) == {"free": "active"}  # a read sees the end; it bills nothing
    assert billing.process_due() == 1
    assert billing.process_due() == 0
    invoices = billing.invoices.list("c")
    assert [i.total for i in invoices] == [D("20.00"), D("30.00")]
    assert [ln.description for ln in invoices[1].lines] == ["metered: 150 messages overage"]


def test_x5_uncancel_clears_the_cancel_and_the_scheduled_default(billing: Autumn) -> None:
    billing.attach("c", "pro")
    billing.cancel("c", "pro")
    back = billing.uncancel("c", "pro")
    assert (back.canceled_at, back.ends_at, back.status) == (None, None, "active")
    assert statuses(billing) == {"pro": "active"}
    # a product that is not canceling is returned unchanged
    assert billing.uncancel("c", "pro") == back


def test_x1_cancel_of_a_product_not_held_is_not_found(billing: Autumn) -> None:
    billing.customers.create("c")
    with pytest.raises(ProductNotFound):
        billing.cancel("c", "pro")
    with pytest.raises(ProductNotFound):
        billing.uncancel("c", "pro")


def test_x6_canceling_an_add_on_leaves_the_main_product_alone(billing: Autumn) -> None:
    billing.attach("c", "pro")
    billing.attach("c", "boost")
    billing.cancel("c", "boost", immediately=True)
    assert statuses(billing) == {"pro": "active"}


def test_x2_trialing_cancel_ends_at_the_trial_end(billing: Autumn, clock: ManualClock) -> None:
    billing.attach("c", "pro-trial")
    canceled = billing.cancel("c", "pro-trial")
    assert canceled.ends_at == T0 + timedelta(days=7)
    clock.advance(days=7, seconds=1)
    assert statuses(billing) == {"free": "active"}
    assert billing.invoices.list("c") == []


# -- renewals -----------------------------------------------------------------------------------
def test_s7_renewal_invoices_overage_once_then_resets(make: Factory, clock: ManualClock) -> None:
    billing = make([usage_plan()])
    billing.attach("c", "metered")
    billing.track("c", "messages", value=350)
    clock.set(MAY + timedelta(hours=1))
    assert billing.process_due() == 1
    assert billing.process_due() == 0
    billing.customers.get("c")  # lazy work again: nothing more
    invoices = billing.invoices.list("c")
    assert [i.total for i in invoices] == [D("20.00"), D("50.00")]
    assert [ln.amount for ln in invoices[1].lines] == [D("30.00"), D("20.00")]
    b = billing.customers.get("c").features["messages"]
    assert (b.remaining, b.usage) == (200, 0)
    p = billing.customers.get("c").products[0]
    assert (p.current_period_start, p.current_period_end) == (MAY, T0.replace(month=6))


def test_s7_missed_periods_renew_one_at_a_time(make: Factory, clock: ManualClock) -> None:
    billing = make([usage_plan()])
    billing.attach("c", "metered")
    billing.track("c", "messages", value=300)
    clock.set(T0.replace(month=7) + timedelta(hours=1))
    billing.process_due()
    invoices = billing.invoices.list("c")
    assert [i.total for i in invoices] == [D("20.00"), D("40.00"), D("20.00"), D("20.00")]


def test_s7_overage_rounds_up_billing_units_and_respects_max_purchase(
    make: Factory, clock: ManualClock
) -> None:
    billing = make(
        [
            Product(
                "api",
                price=Price(10),
                items=[
                    Item.priced(
                        "messages", included=0, price=2, billing_units=500, max_purchase=3000
                    )
                ],
            )
        ]
    )
    billing.attach("c", "api")
    billing.track("c", "messages", value=2300)
    clock.set(MAY + timedelta(minutes=1))
    assert totals(billing) == [D("10.00"), D("20.00")]  # 2,500 billable -> $10, + $10 base


def test_e20_usage_billed_rollover_at_renewal(make: Factory, clock: ManualClock) -> None:
    billing = make(
        [
            Product(
                "r",
                items=[
                    Item.priced(
                        "messages",
                        included=400,
                        price="0.01",
                        rollover=Rollover(max=500, expires_after_months=1),
                    )
                ],
            )
        ]
    )
    billing.attach("c", "r")
    billing.track("c", "messages", value=150)
    clock.set(MAY + timedelta(minutes=1))
    b = billing.customers.get("c").features["messages"]
    assert b.remaining == 650
    assert [r.amount for r in b.rollovers] == [250]


def test_e21_prepaid_rollover_and_pack_invoice_at_renewal(
    make: Factory, clock: ManualClock
) -> None:
    billing = make(
        [
            Product(
                "pp",
                items=[
                    Item.priced(
                        "messages",
                        billing="prepaid",
                        included=300,
                        billing_units=300,
                        price=10,
                        rollover=Rollover(),
                    )
                ],
            )
        ]
    )
    billing.attach("c", "pp", quantities={"messages": 600})
    billing.track("c", "messages", value=350)
    clock.set(MAY + timedelta(minutes=1))
    assert billing.customers.get("c").features["messages"].remaining == 850
    assert totals(billing) == [D("10.00"), D("10.00")]


def test_s7_declined_renewal_makes_the_product_past_due(
    billing: Autumn, gateway: MemoryGateway, clock: ManualClock
) -> None:
    billing.attach("c", "pro")
    gateway.decline_next()
    clock.set(MAY + timedelta(minutes=1))
    assert statuses(billing) == {"pro": "active"}  # a read charges nothing
    billing.process_due()
    assert statuses(billing) == {"pro": "past_due"}
    renewal = billing.invoices.list("c")[1]
    assert (renewal.total, renewal.status) == (D("20.00"), "open")


def test_one_off_is_invoiced_only_once(billing: Autumn, clock: ManualClock) -> None:
    billing.attach("c", "pack")
    clock.set(T0.replace(month=8))
    assert totals(billing) == [D("15.00")]


# -- paid seats ---------------------------------------------------------------------------------
def seat_plan(**kw: object) -> Product:
    return Product(
        "seats",
        items=[Item.priced("users", included=1, price=50, billing="usage", **kw)],  # type: ignore[arg-type]
    )


def test_e17_released_seats_are_reused(make: Factory) -> None:
    billing = make([seat_plan(on_increase="bill_immediately", on_decrease="none")])
    billing.attach("c", "seats")
    b = billing.track("c", "users", value=2).balances["users"]
    assert (b.granted, b.remaining, b.usage, b.overage) == (1, 0, 2, 1)
    b = billing.track("c", "users", value=-1).balances["users"]
    assert (b.remaining, b.usage) == (1, 1)
    b = billing.track("c", "users", value=1).balances["users"]
    assert (b.remaining, b.usage) == (0, 2)
    assert totals(billing) == [D("0.00"), D("50.00")]


def test_e18_two_paid_seats_invoiced_at_once_then_reused(make: Factory) -> None:
    billing = make([seat_plan(on_increase="bill_immediately", on_decrease="none")])
    billing.attach("c", "seats")
    billing.track("c", "users", value=3)
    assert totals(billing) == [D("0.00"), D("100.00")]
    billing.track("c", "users", value=-3)
    billing.track("c", "users", value=3)
    assert totals(billing) == [D("0.00"), D("100.00")]


def test_p7_prorated_seats_mid_period(make: Factory, clock: ManualClock) -> None:
    billing = make(
        [Product("s", items=[Item.priced("users", included=2, price=12, billing="usage")])]
    )
    billing.attach("c", "s")
    billing.track("c", "users", value=2)
    clock.advance(days=15)
    billing.track("c", "users", value=3)
    assert totals(billing)[-1] == D("18.00")


def test_p7_entity_creation_bills_a_seat(make: Factory) -> None:
    billing = make([seat_plan(on_increase="bill_immediately")])
    billing.attach("c", "seats")
    billing.entities.create("c", "e1", "users")
    billing.entities.create("c", "e2", "users")
    assert totals(billing) == [D("0.00"), D("50.00")]
