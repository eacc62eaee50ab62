"""Overage switches, spend limits and usage limits in check and track (docs/rules.md BC2, BC3),
on every store."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import Autumn, InsufficientBalance, ManualClock
from tests.conftest import T0


def balance(billing: Autumn, feature: str, entity: str | None = None) -> Any:
    subject: Any = (
        billing.customers.get("u1") if entity is None else billing.entities.get("u1", entity)
    )
    return subject.features[feature]


def controls(billing: Autumn, **lists: Any) -> None:
    billing.customers.update("u1", billing_controls=lists)


@pytest.fixture
def u1(billing: Autumn) -> Autumn:
    billing.customers.create("u1")  # free: 100 messages, 1000 tokens a month
    return billing


@pytest.fixture
def payg(u1: Autumn) -> Autumn:
    u1.attach("u1", "payg")  # api_calls: 100 included, then usage-billed
    return u1


def test_bc2_overage_allowed_lets_a_free_balance_go_negative(u1: Autumn) -> None:
    controls(u1, overage_allowed=[{"feature_id": "messages", "enabled": True}])
    u1.track("u1", "messages", value=150)
    b = balance(u1, "messages")
    assert (b.remaining, b.usage, b.overage) == (Decimal(0), Decimal(150), Decimal(50))
    assert u1.check("u1", "messages", required_balance=1000).allowed


def test_bc2_overage_forbidden_stops_a_usage_billed_balance_at_zero(payg: Autumn) -> None:
    assert payg.check("u1", "api_calls", required_balance=500).allowed
    controls(payg, overage_allowed=[{"feature_id": "api_calls", "enabled": False}])
    payg.track("u1", "api_calls", value=150)
    assert balance(payg, "api_calls").usage == Decimal(100)
    assert not payg.check("u1", "api_calls").allowed
    with pytest.raises(InsufficientBalance):
        payg.track("u1", "api_calls", value=1, overage="reject")


@pytest.mark.parametrize(
    ("limit", "cap"),
    [({"overage_limit": 20}, 20), ({"overage_limit": 10, "limit_type": "usage_percentage"}, 10)],
)
def test_bc2_a_spend_limit_caps_overage(payg: Autumn, limit: dict[str, Any], cap: int) -> None:
    controls(payg, spend_limits=[{"feature_id": "api_calls", "enabled": True, **limit}])
    assert payg.check("u1", "api_calls", required_balance=100 + cap).allowed
    assert not payg.check("u1", "api_calls", required_balance=101 + cap).allowed
    payg.track("u1", "api_calls", value=60)
    payg.track("u1", "api_calls", value=90)
    assert balance(payg, "api_calls").usage == Decimal(100 + cap)
    assert not payg.check("u1", "api_calls").allowed
    with pytest.raises(InsufficientBalance):
        payg.track("u1", "api_calls", value=1, overage="reject")
    # a disabled spend limit caps nothing
    controls(payg, spend_limits=[{"feature_id": "api_calls", "enabled": False, **limit}])
    payg.track("u1", "api_calls", value=30)
    assert balance(payg, "api_calls").usage == Decimal(130 + cap)


def test_bc2_an_entity_spend_limit_wins_over_the_customers(payg: Autumn) -> None:
    controls(payg, spend_limits=[{"feature_id": "api_calls", "enabled": True, "overage_limit": 50}])
    payg.entities.create(
        "u1",
        "ws",
        "seats",
        billing_controls={
            "spend_limits": [{"feature_id": "api_calls", "enabled": True, "overage_limit": 5}]
        },
    )
    payg.track("u1", "api_calls", value=200, entity_id="ws")
    assert balance(payg, "api_calls").usage == Decimal(105)
    payg.track("u1", "api_calls", value=200)
    assert balance(payg, "api_calls").usage == Decimal(150)


def test_bc3_a_daily_usage_limit_in_utc(u1: Autumn, clock: ManualClock) -> None:
    controls(
        u1,
        usage_limits=[{"feature_id": "messages", "limit": 10, "interval": "day", "anchor": "utc"}],
    )
    assert [u1.track("u1", "messages", value=4).applied["messages"] for _ in range(4)] == [
        Decimal(4),
        Decimal(4),
        Decimal(2),
        Decimal(0),
    ]
    assert not u1.check("u1", "messages").allowed
    with pytest.raises(InsufficientBalance):
        u1.track("u1", "messages", value=1, overage="reject")
    # a refund gives back to the window
    u1.track("u1", "messages", value=-3)
    assert u1.check("u1", "messages", required_balance=3).allowed
    assert not u1.check("u1", "messages", required_balance=4).allowed
    # at midnight UTC a new window starts
    clock.set(T0.replace(hour=23, minute=59))
    assert not u1.check("u1", "messages", required_balance=4).allowed
    clock.set((T0 + timedelta(days=1)).replace(hour=0))
    assert u1.check("u1", "messages", required_balance=10).allowed
    assert u1.track("u1", "messages", value=12).applied["messages"] == Decimal(10)
    assert balance(u1, "messages").usage == Decimal(17)


def test_bc3_billing_cycle_windows_follow_the_reset_anchor(u1: Autumn, clock: ManualClock) -> None:
    # the free product's rows are anchored at T0, 09:00
    controls(u1, usage_limits=[{"feature_id": "tokens", "limit": 5, "interval": "day"}])
    u1.track("u1", "tokens", value=5)
    clock.set(T0 + timedelta(hours=23, minutes=59))
    assert not u1.check("u1", "tokens").allowed
    clock.set(T0 + timedelta(days=1))
    assert u1.check("u1", "tokens", required_balance=5).allowed


def _grants_at_9_and_12_and_a_daily_limit(
    billing: Autumn, clock: ManualClock, *, second_to: str | None
) -> None:
    """Entities e1 and e2; 1000 api_calls a month granted to e1 at 09:00 and to ``second_to``
    (None: the customer) at 12:00; a customer limit of 10 a day; the clock at 13:00."""
    billing.customers.create("u1")
    billing.entities.create("u1", "e1", "seats")
    billing.entities.create("u1", "e2", "seats")
    billing.balances.grant("u1", "api_calls", amount=1000, reset="month", entity_id="e1")
    clock.advance(hours=3)
    billing.balances.grant("u1", "api_calls", amount=1000, reset="month", entity_id=second_to)
    controls(billing, usage_limits=[{"feature_id": "api_calls", "limit": 10, "interval": "day"}])
    clock.advance(hours=1)


def test_bc3_the_customers_window_is_one_whoever_counts_in_it(
    billing: Autumn, clock: ManualClock
) -> None:
    # given an entity e1 with its own monthly api_calls grant anchored at 09:00, the customer's
    # own grant anchored at 12:00, and a customer limit of 10 a day (billing-cycle windows)
    _grants_at_9_and_12_and_a_daily_limit(billing, clock, second_to=None)
    # when e2 (which sees the customer's row only) and the customer (which sees e1's row
    # first) take turns tracking 10
    applied = [
        billing.track("u1", "api_calls", value=10, entity_id=eid).applied["api_calls"]
        for eid in ("e2", None, "e2", None)
    ]
    # then the one window of the customer allowed 10 in all, and counts them
    assert applied == [Decimal(10), Decimal(0), Decimal(0), Decimal(0)]
    assert billing.customers.get("u1").limit_usage == {"api_calls": Decimal(10)}
    assert billing.customers.get("u1").features["api_calls"].usage == Decimal(10)
    # and the window is the customer's cycle: it ends at 12:00 the next day, not at 09:00
    clock.set(T0 + timedelta(days=1, hours=2, minutes=59))  # 11:59
    assert not billing.check("u1", "api_calls", entity_id="e2").allowed
    clock.set(T0 + timedelta(days=1, hours=3))  # 12:00
    assert billing.check("u1", "api_calls", required_balance=10, entity_id="e2").allowed


def test_bc3_a_customer_without_a_row_of_its_own_counts_in_calendar_windows(
    billing: Autumn, clock: ManualClock
) -> None:
    # given api_calls granted to entities only (e1's anchored at 09:00, e2's at 12:00) and a
    # customer limit of 10 a day
    _grants_at_9_and_12_and_a_daily_limit(billing, clock, second_to="e2")
    assert billing.track("u1", "api_calls", value=10, entity_id="e2").applied[
        "api_calls"
    ] == Decimal(10)
    # when e1 is deleted the same day
    billing.entities.delete("u1", "e1")
    clock.advance(minutes=5)
    # then the customer's window still holds the 10 counted
    assert billing.customers.get("u1").limit_usage == {"api_calls": Decimal(10)}
    assert billing.track("u1", "api_calls", value=10, entity_id="e2").applied[
        "api_calls"
    ] == Decimal(0)
    # and the window is the UTC day: it ends at midnight
    clock.set(T0.replace(hour=23, minute=59))
    assert not billing.check("u1", "api_calls", entity_id="e2").allowed
    clock.set(T0.replace(hour=0) + timedelta(days=1))
    assert billing.check("u1", "api_calls", required_balance=10, entity_id="e2").allowed


def test_bc3_hourly_windows(u1: Autumn, clock: ManualClock) -> None:
    controls(u1, usage_limits=[{"feature_id": "tokens", "limit": 2, "interval": "hour"}])
    assert u1.track("u1", "tokens", value=3).applied["tokens"] == Decimal(2)
    clock.advance(minutes=59)
    assert not u1.check("u1", "tokens").allowed
    clock.advance(minutes=1)
    assert u1.check("u1", "tokens", required_balance=2).allowed


def test_bc3_editing_a_limit_keeps_the_count_and_disabling_stops_it(u1: Autumn) -> None:
    limit = {"feature_id": "tokens", "limit": 10, "interval": "month"}
    controls(u1, usage_limits=[limit])
    u1.track("u1", "tokens", value=8)
    controls(u1, usage_limits=[{**limit, "limit": 12}])
    assert u1.track("u1", "tokens", value=8).applied["tokens"] == Decimal(4)
    controls(u1, usage_limits=[{**limit, "enabled": False}])
    assert u1.track("u1", "tokens", value=8).applied["tokens"] == Decimal(8)


def test_bc3_overflow_is_not_clamped(u1: Autumn) -> None:
    controls(u1, usage_limits=[{"feature_id": "tokens", "limit": 10, "interval": "day"}])
    assert u1.track("u1", "tokens", value=25, overage="overflow").applied["tokens"] == 25
    assert not u1.check("u1", "tokens").allowed


def test_bc3_entity_and_customer_limits_both_apply(u1: Autumn) -> None:
    controls(u1, usage_limits=[{"feature_id": "tokens", "limit": 30, "interval": "day"}])
    for ws in ("a", "b"):
        u1.entities.create(
            "u1",
            ws,
            "seats",
            billing_controls={
                "usage_limits": [{"feature_id": "tokens", "limit": 20, "interval": "day"}]
            },
        )
    assert u1.track("u1", "tokens", value=25, entity_id="a").applied["tokens"] == 20
    assert u1.track("u1", "tokens", value=25, entity_id="b").applied["tokens"] == 10
    assert not u1.check("u1", "tokens", entity_id="b").allowed
    assert balance(u1, "tokens").usage == Decimal(30)


def test_bc3_customers_and_entities_report_the_usage_of_the_current_window(
    u1: Autumn, clock: ManualClock
) -> None:
    """Given a customer limit and an entity's own limit (Autumn's ``usage_limits[].usage``),
    when usage is tracked through the entity, then each reports what its window counted, and
    zero once its window is over."""
    # given
    controls(
        u1, usage_limits=[{"feature_id": "tokens", "limit": 30, "interval": "day", "anchor": "utc"}]
    )
    u1.entities.create(
        "u1",
        "a",
        "seats",
        billing_controls={
            "usage_limits": [
                {"feature_id": "tokens", "limit": 20, "interval": "week", "anchor": "utc"}
            ]
        },
    )
    # when
    u1.track("u1", "tokens", value=7, entity_id="a")
    u1.track("u1", "tokens", value=5)
    # then
    customer = u1.customers.get("u1")
    assert customer.limit_usage == {"tokens": Decimal(12)}
    assert u1.entities.get("u1", "a").limit_usage == {"tokens": Decimal(7)}
    clock.set(T0 + timedelta(days=1))  # a new day, the same week (T0: a Monday)
    assert u1.customers.get("u1").limit_usage == {"tokens": Decimal(0)}
    assert u1.entities.get("u1", "a").limit_usage == {"tokens": Decimal(7)}


def test_bc3_a_lock_counts_in_the_window_and_its_release_gives_it_back(u1: Autumn) -> None:
    controls(u1, usage_limits=[{"feature_id": "tokens", "limit": 10, "interval": "day"}])
    assert u1.check("u1", "tokens", required_balance=8, lock={"lock_id": "a"}).allowed
    assert not u1.check("u1", "tokens", required_balance=3, lock={"lock_id": "b"}).allowed
    u1.balances.finalize("a", "confirm", override_value=6)
    assert u1.check("u1", "tokens", required_balance=4).allowed
    assert not u1.check("u1", "tokens", required_balance=5).allowed


def test_bc2_bc3_limits_hold_under_concurrent_tracks(u1: Autumn) -> None:
    # given a usage limit of 30 tokens a day, and 8 threads tracking 1 token 10 times each
    controls(u1, usage_limits=[{"feature_id": "tokens", "limit": 30, "interval": "day"}])
    rejected: list[int] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(10):
            try:
                u1.track("u1", "tokens", value=1, overage="reject")
            except InsufficientBalance:
                rejected.append(1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then exactly the limit was used, and every other track was refused
    assert balance(u1, "tokens").usage == Decimal(30)
    assert len(rejected) == 50
