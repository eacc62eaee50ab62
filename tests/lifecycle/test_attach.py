"""Attach: classification (A2), upgrades (A3, P9), downgrades (A4), carry-over (A5), U1-U5."""

from __future__ import annotations

from datetime import timedelta

import pytest

from autumn_core import (
    Autumn,
    Item,
    ManualClock,
    Price,
    Product,
    ProductAlreadyAttached,
)
from autumn_core.rules.classify import is_upgrade
from tests.lifecycle.conftest import T0, D, Factory, base_products, msgs, statuses, totals


def test_e23_free_to_pro_is_an_upgrade_with_one_20_invoice(billing: Autumn) -> None:
    # given a customer holding the free default
    billing.customers.create("c")
    # when previewing, then attaching pro
    assert billing.preview_attach("c", "pro").due_now == D(20)
    result = billing.attach("c", "pro")
    # then pro is active, free expired, messages 500/500 and one $20 invoice
    assert result.scenario == "upgrade"
    assert statuses(billing) == {"pro": "active"}
    b = billing.customers.get("c").features["messages"]
    assert (b.granted, b.remaining) == (500, 500)
    assert totals(billing) == [D("20.00")]
    assert result.invoice is not None and result.invoice.total == D("20.00")


def test_a2c_new_when_no_current_product(make: Factory) -> None:
    billing = make([p for p in base_products() if p.id != "free"])
    result = billing.attach("c", "pro")
    assert result.scenario == "new"
    assert result.product is not None and result.product.status == "active"
    assert result.product.current_period_start == T0
    assert result.product.current_period_end == T0.replace(month=5)


def test_e24_downgrade_is_scheduled_and_a_later_upgrade_deletes_it(billing: Autumn) -> None:
    billing.attach("c", "premium")
    down = billing.attach("c", "pro")
    assert down.scenario == "downgrade"
    assert down.product is not None and down.product.status == "scheduled"
    assert down.product.started_at == T0.replace(month=5)
    c = billing.customers.get("c")
    premium = next(p for p in c.products if p.id == "premium")
    assert (premium.status, premium.canceled_at, premium.ends_at) == (
        "active",
        T0,
        T0.replace(month=5),
    )
    up = billing.attach("c", "ultra")
    assert up.scenario == "upgrade"
    assert statuses(billing) == {"ultra": "active"}


def test_e25_already_attached_also_when_canceling_and_uncancel_is_the_way_back(
    billing: Autumn,
) -> None:
    billing.attach("c", "pro")
    with pytest.raises(ProductAlreadyAttached):
        billing.attach("c", "pro")
    assert billing.attach("c", "free").scenario == "downgrade"
    assert statuses(billing) == {"pro": "active", "free": "scheduled"}
    with pytest.raises(ProductAlreadyAttached):
        billing.attach("c", "pro")
    back = billing.uncancel("c", "pro")
    assert (back.canceled_at, back.ends_at) == (None, None)
    assert statuses(billing) == {"pro": "active"}


def test_e26_one_off_is_alongside_with_its_own_invoice(billing: Autumn) -> None:
    billing.attach("c", "pro")
    result = billing.attach("c", "pack")
    assert result.scenario == "one_off"
    assert statuses(billing) == {"pro": "active", "pack": "active"}
    assert totals(billing) == [D("20.00"), D("15.00")]
    assert billing.customers.get("c").features["messages"].granted == 550


def test_a2a_add_on_stacks_when_attached_again(billing: Autumn) -> None:
    assert billing.attach("c", "boost").scenario == "add_on"
    assert billing.attach("c", "boost").scenario == "add_on"
    assert billing.customers.get("c").features["words"].granted == 300


def test_e34_upgrade_on_day_15_of_30_credits_10_and_charges_25(
    billing: Autumn, clock: ManualClock
) -> None:
    # given pro bought on April 1 (a 30-day period)
    billing.attach("c", "pro")
    # when upgrading to premium on day 15
    clock.advance(days=15)
    result = billing.attach("c", "premium")
    # then -$10 for unused pro time, +$25 for the rest of premium's period: $15 due
    assert result.scenario == "upgrade"
    assert result.invoice is not None
    assert [ln.amount for ln in result.invoice.lines] == [D("-10.00"), D("25.00")]
    assert result.invoice.total == D("15.00")
    # and the anchor is kept: premium renews on May 1
    assert result.product is not None and result.product.current_period_end == T0.replace(month=5)


def test_p9_thirty_to_seventy_five_with_twelve_of_thirty_days_left(
    make: Factory, clock: ManualClock
) -> None:
    billing = make(
        [
            Product("a", price=Price(30), items=[msgs(1)]),
            Product("b", price=Price(75), items=[msgs(2)]),
        ]
    )
    billing.attach("c", "a")
    clock.advance(days=18)
    preview = billing.preview_attach("c", "b")
    assert [ln.amount for ln in preview.lines] == [D("-12.00"), D("30.00")]
    assert preview.due_now == D("18.00")
    assert billing.attach("c", "b").invoice.total == D("18.00")  # type: ignore[union-attr]


def test_a4_downgrade_switches_at_period_end_with_fresh_usage(
    billing: Autumn, clock: ManualClock
) -> None:
    billing.attach("c", "premium")
    billing.track("c", "messages", value=300)
    billing.attach("c", "pro")
    clock.set(T0.replace(month=5) + timedelta(seconds=1))
    assert statuses(billing) == {"pro": "active"}
    b = billing.customers.get("c").features["messages"]
    assert (b.granted, b.remaining, b.usage) == (500, 500, 0)
    # pro's first period is billed in advance at the switch
    assert totals(billing) == [D("50.00"), D("20.00")]


def test_a5_usage_carry_over_on_an_immediate_switch(make: Factory) -> None:
    products = [
        Product(
            "starter",
            items=[msgs(200), Item.feature("users", included=4)],
        ),
        Product(
            "scale",
            price=Price(10),
            items=[msgs(800), Item.feature("users", included=8)],
        ),
        Product(
            "scale-keep",
            price=Price(10),
            items=[
                Item.feature("messages", included=800, reset="month", reset_usage_on_enable=False),
                Item.feature("users", included=8),
            ],
        ),
    ]
    billing = make(products)
    billing.attach("c", "starter")
    billing.track("c", "messages", value=80)
    billing.track("c", "users", value=2)
    billing.attach("c", "scale")
    f = billing.customers.get("c").features
    assert f["messages"].remaining == 800  # metered usage resets by default
    assert (f["users"].remaining, f["users"].usage) == (6, 2)  # allocated usage carries
    billing.attach("d", "starter")
    billing.track("d", "messages", value=80)
    billing.attach("d", "scale-keep")
    assert billing.customers.get("d").features["messages"].remaining == 720


def test_a5_reset_anchor_is_kept_on_upgrade(billing: Autumn, clock: ManualClock) -> None:
    billing.customers.create("c")  # free: messages reset monthly from T0
    clock.advance(days=10)
    billing.attach("c", "pro")
    b = billing.customers.get("c").features["messages"]
    assert b.next_reset_at == T0.replace(month=5)


def test_en5_entity_scope_coexists_with_customer_scope(billing: Autumn) -> None:
    billing.attach("c", "pro")
    billing.entities.create("c", "e1", "users")
    result = billing.attach("c", "premium", entity_id="e1")
    assert result.scenario == "new"
    c = billing.customers.get("c")
    assert [p.id for p in c.products] == ["pro"]
    assert [p.id for p in c.entities[0].products] == ["premium"]


def test_attach_result_product_for_scheduled_and_new(billing: Autumn) -> None:
    result = billing.attach("c", "premium")
    assert result.product is not None and result.product.id == "premium"
    assert result.checkout_url is None and result.trial_ends_at is None


@pytest.mark.parametrize(
    ("old", "new", "upgrade"),
    [
        (Price(25), Price(60), True),  # U5
        (Price(60), Price(25), False),
        (Price(240, interval="year"), Price(30), True),  # 20 <= 30
        (Price(30), Price(240, interval="year"), True),  # U4 longer interval
        (Price(240, interval="year"), Price(15), False),  # 20 > 15
        (None, Price(1), True),  # U1 free -> paid
        (Price(1), None, False),  # U1 paid -> free
        (Price(10), Price(10), True),  # ties upgrade
        (Price(99), Price(5, interval="one_off"), True),  # U2
    ],
)
def test_u_rules(old: Price | None, new: Price | None, upgrade: bool) -> None:
    a = Product("a", price=old, items=[msgs(1)])
    b = Product("b", price=new, items=[msgs(1)])
    assert is_upgrade(a, b, {"messages": "metered"}) is upgrade


def test_u3_usage_only_prices_are_upgrades() -> None:
    a = Product("a", items=[Item.priced("messages", price=1, billing="usage")])
    b = Product("b", items=[Item.priced("messages", price="0.5", billing="usage")])
    assert is_upgrade(a, b, {"messages": "metered"})
    assert is_upgrade(b, a, {"messages": "metered"})
