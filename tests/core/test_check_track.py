"""A first check and track (issue 2): one product, boolean/metered/allocated, idempotency, events."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from autumn_core import (
    Autumn,
    FeatureNotFound,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidRequest,
    ManualClock,
    TrackRequest,
)
from tests.conftest import T0


def test_e1_no_row_means_denied_with_no_balance(billing: Autumn) -> None:
    billing.customers.create("c")
    result = billing.check("c", "users")
    assert (result.allowed, result.feature_id, result.required_balance, result.balance) == (
        False,
        "users",
        Decimal(1),
        None,
    )


def test_e2_boolean_granted_by_a_live_product(billing: Autumn) -> None:
    result = billing.check("c", "dashboard")
    assert result.allowed
    assert result.balance is not None and result.balance.type == "boolean"
    assert (result.balance.granted, result.balance.remaining, result.balance.usage) == (0, 0, 0)


def test_e3_metered_balance_resets_monthly_from_the_attach_time(billing: Autumn) -> None:
    result = billing.check("c", "messages")
    assert result.allowed
    b = result.balance
    assert b is not None
    assert (b.granted, b.remaining, b.usage, b.interval) == (1000, 1000, 0, "month")
    assert b.next_reset_at == T0.replace(month=4)


def test_e6_e7_track_is_exact(billing: Autumn) -> None:
    billing.track("c", "messages")
    result = billing.track("c", "messages", value="23.47")
    b = result.balances["messages"]
    assert (b.remaining, b.usage, b.granted) == (Decimal("975.53"), Decimal("24.47"), 1000)
    assert result.applied == {"messages": Decimal("23.47")}
    assert result.value == Decimal("23.47")


def test_required_balance_decides(billing: Autumn) -> None:
    billing.track("c", "messages", value=990)
    assert billing.check("c", "messages", required_balance=10).allowed
    assert not billing.check("c", "messages", required_balance="10.01").allowed
    assert billing.check("c", "messages", required_balance=0).allowed
    assert billing.customers.get("c").features["messages"].remaining == 10


def test_send_event_deducts_atomically_with_the_decision(billing: Autumn) -> None:
    billing.track("c", "messages", value=998)
    assert billing.check("c", "messages", required_balance=2, send_event=True).allowed
    denied = billing.check("c", "messages", required_balance=1, send_event=True)
    assert not denied.allowed
    assert [e.value for e in billing.events.list("c")] == [998, 2]
    assert billing.customers.get("c").features["messages"].remaining == 0


def test_send_event_on_a_boolean_is_refused(billing: Autumn) -> None:
    with pytest.raises(InvalidRequest):
        billing.check("c", "dashboard", send_event=True)


def test_cap_drops_what_does_not_fit_and_reject_changes_nothing(billing: Autumn) -> None:
    billing.track("c", "messages", value=970)
    capped = billing.track("c", "messages", value=45)
    assert capped.applied == {"messages": Decimal(30)}
    assert capped.balances["messages"].remaining == 0
    with pytest.raises(InsufficientBalance):
        billing.track("c", "messages", value=1, overage="reject")
    assert [e.value for e in billing.events.list("c")] == [970, 45]


def test_allocated_usage_goes_negative_unless_rejected(billing: Autumn) -> None:
    billing.attach("c", "seats5")
    billing.track("c", "users", value=5)
    over = billing.track("c", "users", value=2)
    b = over.balances["users"]
    assert (b.remaining, b.overage, b.usage) == (0, 2, 7)
    with pytest.raises(InsufficientBalance):
        billing.track("c", "users", value=1, overage="reject")
    assert billing.customers.get("c").features["users"].usage == 7


def test_a_check_past_the_reset_sees_the_reset_balance_without_saving_it(
    billing: Autumn, clock: ManualClock
) -> None:
    # given a customer who used 990 of 1,000 messages
    billing.track("c", "messages", value=990)
    billing.check("c", "messages")  # a check before the reset is memoized on the stored state
    version_before = stored_version(billing, "c")
    # when the clock passes the monthly reset and the customer is only checked
    clock.advance(days=40)
    result = billing.check("c", "messages", required_balance=500)
    # then the check sees the reset balance, and the next reset a month later
    assert result.allowed
    b = result.balance
    assert b is not None
    assert (b.remaining, b.usage, b.next_reset_at) == (1000, 0, T0.replace(month=5))
    # and the read saved nothing: the stored customer is the one the last track left
    assert stored_version(billing, "c") == version_before


def stored_version(billing: Autumn, customer_id: str) -> int:
    with billing.store.transaction(write=False) as tx:
        pk = tx.customer_pk(customer_id)
        assert pk is not None
        state = tx.load_customer(pk)
        assert state is not None
        return state.version


def test_allocated_rows_never_reset(billing: Autumn, clock: ManualClock) -> None:
    billing.attach("c", "seats5")
    billing.track("c", "users", value=3)
    clock.advance(days=400)
    b = billing.customers.get("c").features["users"]
    assert (b.usage, b.next_reset_at, b.interval) == (3, None, None)


def test_e9_events_are_recorded_without_any_balance(billing: Autumn) -> None:
    billing.customers.create("c")
    for v in ["3", "1.5", 7, 2, "0.25"]:
        assert billing.track("c", "words", value=v).applied == {"words": 0}
    events = billing.events.list("c")
    assert sum(e.value for e in events) == Decimal("13.75")
    assert len(events) == 5


def test_e10_event_name_deducts_every_listener(billing: Autumn) -> None:
    billing.attach("c", "actions")
    result = billing.track("c", event_name="action-event", value=4)
    assert result.applied == {"action1": 4, "action3": 4}
    assert result.balances["action1"].remaining == 196
    assert result.balances["action3"].remaining == 146
    (event,) = billing.events.list("c")
    assert (event.feature_id, event.event_name) == (None, "action-event")


def test_event_name_rules(billing: Autumn) -> None:
    with pytest.raises(FeatureNotFound):
        billing.track("c", event_name="nobody-listens")
    with pytest.raises(InvalidRequest):
        billing.track("c", event_name="chat", overage="reject")
    with pytest.raises(InvalidRequest):
        billing.track("c", "messages", event_name="chat")
    with pytest.raises(InvalidRequest):
        billing.track("c")


def test_idempotent_replay_and_conflict(billing: Autumn, clock: ManualClock) -> None:
    first = billing.track("c", "messages", value="25.5", idempotency_key="k1")
    again = billing.track("c", "messages", value=25.5, idempotency_key="k1")
    same = billing.track("c", "messages", value=Decimal("25.50"), idempotency_key="k1")
    assert not first.replayed and again.replayed and same.replayed
    assert again.event_id == first.event_id
    assert billing.customers.get("c").features["messages"].usage == Decimal("25.5")
    with pytest.raises(IdempotencyConflict):
        billing.track("c", "messages", value=26, idempotency_key="k1")
    # Keys are scoped per customer.
    assert not billing.track("d", "messages", value=26, idempotency_key="k1").replayed
    clock.advance(hours=24)
    assert not billing.track("c", "messages", value=26, idempotency_key="k1").replayed
    assert len(billing.events.list("c")) == 2


def test_a_failed_track_stores_no_key(billing: Autumn) -> None:
    billing.track("c", "messages", value=1000)
    with pytest.raises(InsufficientBalance):
        billing.track("c", "messages", value=1, overage="reject", idempotency_key="k")
    billing.balances.grant("c", "messages", 5)
    assert not billing.track(
        "c", "messages", value=1, overage="reject", idempotency_key="k"
    ).replayed


def test_track_many_is_one_transaction(billing: Autumn) -> None:
    billing.track("c", "messages", value=995)
    with pytest.raises(InsufficientBalance):
        billing.track_many(
            [
                TrackRequest("c", "messages", value=3),
                TrackRequest("c", "messages", value=3, overage="reject"),
            ]
        )
    assert billing.customers.get("c").features["messages"].remaining == 5
    results = billing.track_many(
        [
            TrackRequest("c", "messages", value=2, idempotency_key="a"),
            TrackRequest("c", "messages", value=2, idempotency_key="a"),
            TrackRequest("c", "messages", value=2),
        ]
    )
    assert [r.replayed for r in results] == [False, True, False]
    assert billing.customers.get("c").features["messages"].remaining == 1


def test_timestamp_is_stored_not_applied(billing: Autumn) -> None:
    when = T0 - timedelta(days=40)
    billing.track("c", "messages", value=1, timestamp=when, properties={"model": "x"})
    (event,) = billing.events.list("c")
    assert (event.timestamp, event.properties) == (when, {"model": "x"})
    with pytest.raises(InvalidRequest):
        billing.track("c", "messages", timestamp=when.replace(tzinfo=None))


def test_events_list_filters_and_pages(billing: Autumn, clock: ManualClock) -> None:
    ids = []
    for v in range(1, 6):
        ids.append(billing.track("c", "messages" if v % 2 else "words", value=v).event_id)
        clock.advance(minutes=1)
    assert [e.value for e in billing.events.list("c", limit=2)] == [1, 2]
    assert [e.value for e in billing.events.list("c", starting_after=ids[1])] == [3, 4, 5]
    assert [e.value for e in billing.events.list("c", feature_id="words")] == [2, 4]
    assert [e.value for e in billing.events.list("c", start=T0 + timedelta(minutes=2))] == [3, 4, 5]
    with pytest.raises(InvalidRequest):
        billing.events.list("c", limit=1001)


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), True, None, "abc", "1e16", object(), [1]]
)
def test_bad_values_are_refused_and_change_nothing(billing: Autumn, bad: object) -> None:
    billing.track("c", "messages", value=1)
    before = billing.customers.get("c")
    with pytest.raises(InvalidRequest):
        billing.track("c", "messages", value=bad)
    with pytest.raises(InvalidRequest):
        billing.check("c", "messages", required_balance=bad)
    assert billing.customers.get("c") == before
    assert len(billing.events.list("c")) == 1


def test_unknown_feature_and_entity(billing: Autumn) -> None:
    from autumn_core import EntityNotFound

    billing.customers.create("c")
    with pytest.raises(FeatureNotFound):
        billing.track("c", "nope")
    with pytest.raises(FeatureNotFound):
        billing.check("c", "nope")
    with pytest.raises(EntityNotFound):
        billing.track("c", "messages", entity_id="ghost")
    assert len(billing.events.list("c")) == 0


def test_process_due_applies_resets_for_every_customer_once(
    billing: Autumn, clock: ManualClock
) -> None:
    billing.track("a", "messages", value=10)
    billing.track("b", "messages", value=20)
    assert billing.process_due() == 0
    clock.advance(days=31)
    assert billing.process_due() == 2
    assert billing.process_due() == 0
    assert billing.customers.get("a").features["messages"].remaining == 1000
    with pytest.raises(InvalidRequest):
        billing.process_due(limit=0)
