"""The worked examples of DOMAIN.md §19 on the facade, on every store (E1-E16, E19-E22)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal as D

import pytest

from autumn_core import (
    Autumn,
    CustomerData,
    InsufficientBalance,
    ManualClock,
)
from autumn_core.ports import Store
from tests.balances.conftest import T0
from tests.conftest import StoreFactory


def remaining(billing: Autumn, c: str, f: str = "messages") -> D:
    return billing.customers.get(c).features[f].remaining


# -- check ---------------------------------------------------------------------------------------
def test_e1_no_product_check_is_denied_without_balance(billing: Autumn) -> None:
    """E1: no products -> allowed False, feature_id messages, required 1, balance None."""
    billing.customers.create("c")
    r = billing.check("c", "messages")
    assert (r.allowed, r.feature_id, r.required_balance, r.balance) == (False, "messages", 1, None)


def test_e2_boolean_is_allowed_with_zeroed_balance(billing: Autumn) -> None:
    """E2: free attached -> dashboard allowed, balance type boolean with zeros."""
    billing.attach("c", "free")
    r = billing.check("c", "dashboard")
    assert r.allowed and r.balance is not None
    assert (r.balance.type, r.balance.granted, r.balance.remaining, r.balance.usage) == (
        "boolean",
        0,
        0,
        0,
    )


def test_e3_monthly_balance_and_next_reset_from_the_anchor(billing: Autumn) -> None:
    """E3: 1000 monthly -> granted 1000, remaining 1000, interval month, reset a month on."""
    billing.attach("c", "free")
    b = billing.check("c", "messages").balance
    assert b is not None
    assert (b.granted, b.remaining, b.usage, b.interval) == (D(1000), D(1000), D(0), "month")
    assert b.next_reset_at == T0.replace(month=2, day=28)  # Jan 31 clamps to Feb 28


def test_e4_credit_system_check_with_fractional_required(billing: Autumn) -> None:
    """E4: credits 100 -> 50.25 allowed, 100.5 denied, remaining 100 either way."""
    billing.attach("c", "credits100")
    ok = billing.check("c", "credits", required_balance="50.25")
    no = billing.check("c", "credits", required_balance="100.5")
    assert (ok.allowed, no.allowed) == (True, False)
    assert remaining(billing, "c", "credits") == D(100)


def test_e5_concurrent_send_event_never_oversells(billing: Autumn) -> None:
    """E5: 5 seats, 7 concurrent checks -> 5 allowed; 200 messages, 150 x 2 -> 100 allowed."""
    billing.attach("c", "seats5")
    billing.attach("c", "m200")
    results: list[bool] = []
    lock = threading.Lock()

    def hit(feature: str, required: int) -> None:
        r = billing.check("c", feature, required_balance=required, send_event=True)
        with lock:
            results.append(r.allowed)

    threads = [threading.Thread(target=hit, args=("users", 1)) for _ in range(7)]
    threads += [threading.Thread(target=hit, args=("messages", 2)) for _ in range(150)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 105 and results.count(False) == 52
    c = billing.customers.get("c")
    assert (c.features["users"].remaining, c.features["users"].usage) == (D(0), D(5))
    assert (c.features["messages"].remaining, c.features["messages"].usage) == (D(0), D(200))
    assert len(billing.events.list("c", limit=1000)) == 105


# -- track ---------------------------------------------------------------------------------------
def test_e6_e7_track_is_exact(billing: Autumn) -> None:
    """E6/E7: 100 -> track() -> 99/1; then 23.47 -> 75.53 / 24.47, granted 100."""
    billing.attach("c", "m100")
    b = billing.track("c", "messages").balances["messages"]
    assert (b.remaining, b.usage) == (D(99), D(1))
    b = billing.track("c", "messages", value="23.47").balances["messages"]
    assert (b.remaining, b.usage, b.granted) == (D("75.53"), D("24.47"), D(100))


def test_e8_auto_create_with_customer_data_then_entity(billing: Autumn) -> None:
    """E8: track on an unknown customer creates it with customer_data; then an entity."""
    billing.track(
        "new-cus",
        "messages",
        value=5,
        customer_data=CustomerData(name="Test Customer", email="test@test.com"),
    )
    c = billing.customers.get("new-cus")
    assert (c.name, c.email) == ("Test Customer", "test@test.com")
    assert [e.value for e in billing.events.list("new-cus")] == [D(5)]
    billing.entities.create("new-cus", "ent-1", "users", name="Test Entity")
    assert [(e.id, e.name) for e in billing.customers.get("new-cus").entities] == [
        ("ent-1", "Test Entity")
    ]


def test_e9_no_products_records_events_applied_zero(billing: Autumn) -> None:
    """E9: 3, 1.5, 7, 2, 0.25 -> 5 events summing to 13.75, applied 0 each time."""
    billing.customers.create("c")
    for v in [3, "1.5", 7, 2, "0.25"]:
        assert billing.track("c", "messages", value=v).applied == {"messages": D(0)}
    events = billing.events.list("c")
    assert (len(events), sum(e.value for e in events)) == (5, D("13.75"))


def test_e10_event_name_deducts_every_listener(billing: Autumn) -> None:
    """E10: action-event -> action1 and action3 both drop by v."""
    billing.attach("c", "actions")
    r = billing.track("c", event_name="action-event", value="2.5")
    assert r.applied == {"action1": D("2.5"), "action3": D("2.5")}
    assert (r.balances["action1"].remaining, r.balances["action3"].remaining) == (
        D("197.5"),
        D("147.5"),
    )


# -- deduction order and stacking ----------------------------------------------------------------
def test_e11_free_row_then_usage_add_on_with_overage(billing: Autumn) -> None:
    """E11: free 1000 + usage add-on 500: 500, 700, 500 -> usage 1700, remaining 0, overage 200."""
    billing.attach("c", "free")
    billing.attach("c", "overage500")
    b = billing.customers.get("c").features["messages"]
    assert (b.granted, b.overage_allowed) == (D(1500), True)
    billing.track("c", "messages", value=500)
    assert [r.balance for r in billing.customers.get("c").features["messages"].breakdown] == [
        D(500),
        D(500),
    ]
    billing.track("c", "messages", value=700)
    assert [r.balance for r in billing.customers.get("c").features["messages"].breakdown] == [
        D(0),
        D(300),
    ]
    b = billing.track("c", "messages", value=500).balances["messages"]
    assert [r.balance for r in b.breakdown] == [D(0), D(-200)]
    assert (b.usage, b.remaining, b.overage) == (D(1700), D(0), D(200))


def test_e12_free_allocated_overage_refund_capped_and_grant(billing: Autumn) -> None:
    """E12: users 5: +8 -> overage 3; -20 -> 5/0; grant 5 -> 10/10; +5, -100 -> 10/0."""
    billing.attach("c", "seats5")
    b = billing.track("c", "users", value=8).balances["users"]
    assert (b.remaining, b.overage, b.usage) == (D(0), D(3), D(8))
    b = billing.track("c", "users", value=-20).balances["users"]
    assert (b.remaining, b.usage) == (D(5), D(0))
    b = billing.balances.grant("c", "users", 5)
    assert (b.granted, b.remaining) == (D(10), D(10))
    billing.track("c", "users", value=5)
    b = billing.track("c", "users", value=-100).balances["users"]
    assert (b.remaining, b.usage) == (D(10), D(0))


def test_e13_product_row_before_the_grant(billing: Autumn) -> None:
    """E13: 10 monthly + grant 50 -> 60; track 15 -> 45 (product first); 30 -> 15, usage 45."""
    billing.attach("c", "m10")
    assert billing.balances.grant("c", "messages", 50).remaining == D(60)
    b = billing.track("c", "messages", value=15).balances["messages"]
    assert b.remaining == D(45)
    assert [r.balance for r in b.breakdown] == [D(0), D(45)]
    b = billing.track("c", "messages", value=30).balances["messages"]
    assert (b.remaining, b.usage) == (D(15), D(45))


def test_e14_monthly_main_then_non_resetting_add_on_and_reset(
    billing: Autumn, clock: ManualClock
) -> None:
    """E14: 500 monthly + 200 once: 400 -> 100+200; 200 -> 0+100; reset -> 500+100."""
    billing.attach("c", "m500")
    billing.attach("c", "once200")
    b = billing.track("c", "messages", value=400).balances["messages"]
    assert [r.balance for r in b.breakdown] == [D(100), D(200)]
    b = billing.track("c", "messages", value=200).balances["messages"]
    assert [r.balance for r in b.breakdown] == [D(0), D(100)]
    clock.set(T0 + timedelta(days=29))  # Feb 28 + a day later than the clamped boundary
    b = billing.customers.get("c").features["messages"]
    assert [r.balance for r in b.breakdown] == [D(500), D(100)]
    assert b.remaining == D(600)
    assert b.interval == "multiple"


# -- entities and balance edits ------------------------------------------------------------------
def test_e15_customer_level_track_shows_in_every_entity(billing: Autumn) -> None:
    """E15: customer 300 and 3 entities, customer track(50) -> 250 everywhere."""
    billing.attach("c", "m300")
    for e in ("e1", "e2", "e3"):
        billing.entities.create("c", e, "users")
    billing.track("c", "messages", value=50)
    c = billing.customers.get("c")
    assert c.features["messages"].remaining == D(250)
    assert [e.features["messages"].remaining for e in c.entities] == [D(250)] * 3
    assert billing.entities.get("c", "e2").features["messages"].remaining == D(250)


def test_e16_grant_then_set_remaining(billing: Autumn) -> None:
    """E16: 100 + grant 50 -> granted 150; set remaining 100 -> granted 150, usage 50."""
    billing.attach("c", "m100")
    assert billing.balances.grant("c", "messages", 50).granted == D(150)
    b = billing.balances.set("c", "messages", remaining=100)
    assert (b.granted, b.remaining, b.usage) == (D(150), D(100), D(50))


# -- resets --------------------------------------------------------------------------------------
def test_e19_lazy_reset_before_the_track(billing: Autumn, clock: ManualClock) -> None:
    """E19: 100 with 50 used, past next_reset_at: track(20) -> 80/20, next boundary ahead."""
    billing.attach("c", "m100")
    billing.track("c", "messages", value=50)
    clock.set(T0 + timedelta(days=60))  # Apr 1: Feb 28 and Mar 31 both missed
    b = billing.track("c", "messages", value=20).balances["messages"]
    assert (b.remaining, b.usage) == (D(80), D(20))
    assert b.next_reset_at == T0.replace(month=4, day=30)


@pytest.mark.parametrize(("persist", "after"), [(True, [D(25), D(0)]), (False, [D(100), D(100)])])
def test_e22_persist_free_overage(
    make_billing: Callable[..., Autumn], clock: ManualClock, persist: bool, after: list[D]
) -> None:
    """E22: set remaining -75 -> the reset gives 25; from -100 -> 0 (usage 100); off -> 100."""
    billing = make_billing(options={"persist_free_overage": persist})
    billing.attach("c", "m100")
    billing.balances.set("c", "messages", remaining=-75)
    clock.set(T0 + timedelta(days=29))
    b = billing.customers.get("c").features["messages"]
    assert b.remaining == after[0]
    billing.balances.set("c", "messages", remaining=-100)
    clock.set(T0 + timedelta(days=60))
    b = billing.customers.get("c").features["messages"]
    assert b.remaining == after[1]
    if persist:
        assert b.usage == D(100)


def test_process_due_resets_without_a_read(billing: Autumn, clock: ManualClock) -> None:
    """S4: process_due applies the reset; running it again changes nothing."""
    billing.attach("c", "m100")
    billing.track("c", "messages", value=30)
    clock.set(T0 + timedelta(days=29))
    assert billing.process_due() == 1
    assert billing.process_due() == 0
    assert remaining(billing, "c") == D(100)


def test_r9_allocated_never_drops_silently_even_under_cap(billing: Autumn) -> None:
    """R9: usage-billed seats, included 1, max_purchase 2: track(4) under cap -> raises."""
    billing.attach("c", "paidseats")
    before = billing.customers.get("c")
    with pytest.raises(InsufficientBalance):
        billing.track("c", "users", value=4)
    assert billing.customers.get("c") == before
    assert billing.events.list("c") == []
    b = billing.track("c", "users", value=3).balances["users"]
    assert (b.usage, b.overage, b.max_purchase) == (D(3), D(2), D(2))


# -- rollovers at renewal (paid products, through the lifecycle layer) ---------------------------
def _rollover_billing(clock: ManualClock, store: Store) -> Autumn:
    from autumn_core import Catalog, Feature, Item, Product, Rollover

    catalog = Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product(
                "usage",
                items=[
                    Item.priced(
                        "messages",
                        price="0.01",
                        billing="usage",
                        included=400,
                        rollover=Rollover(max=500, expires_after_months=1),
                    )
                ],
            ),
            Product(
                "prepaid",
                items=[
                    Item.priced(
                        "messages",
                        price=10,
                        billing="prepaid",
                        billing_units=300,
                        included=300,
                        rollover=Rollover(),
                    )
                ],
            ),
        ],
    )
    return Autumn(catalog, store=store, clock=clock)


def test_e20_usage_billed_rollover_at_renewal(clock: ManualClock, new_store: StoreFactory) -> None:
    """E20: included 400, Rollover(max=500, 1 month): track(150), renewal -> 650, [250]."""
    billing = _rollover_billing(clock, new_store())
    billing.attach("c", "usage")
    billing.track("c", "messages", value=150)
    clock.set(T0 + timedelta(days=29))  # past Feb 28 10:00, the clamped period end
    b = billing.customers.get("c").features["messages"]
    assert b.remaining == D(650)
    assert [(r.amount, r.balance) for r in b.rollovers] == [(D(250), D(250))]
    assert b.rollovers[0].expires_at == T0.replace(month=3, day=28)  # old boundary + 1 month


def test_e21_prepaid_uncapped_rollover_and_pack_invoice(
    clock: ManualClock, new_store: StoreFactory
) -> None:
    """E21: prepaid 300 + 1 pack (600), uncapped rollover: track(350), renewal -> 850, $10."""
    billing = _rollover_billing(clock, new_store())
    billing.attach("c", "prepaid", quantities={"messages": 600})
    billing.track("c", "messages", value=350)
    clock.set(T0 + timedelta(days=29))
    b = billing.customers.get("c").features["messages"]
    assert (b.remaining, [r.amount for r in b.rollovers]) == (D(850), [D(250)])
    assert billing.invoices.list("c")[-1].total == D(10)
