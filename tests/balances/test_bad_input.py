"""Bad input is refused with a typed error and changes nothing (API.md conventions, R1, K1, B1-B4).

Each case runs against a customer holding rows, an entity and events; the customer and its
events are compared before and after.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import (
    Autumn,
    AutumnError,
    EntityNotFound,
    FeatureNotFound,
    InvalidRequest,
)
from tests.balances.conftest import T0

BAD_NUMBERS: list[Any] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    True,
    False,
    None,
    "abc",
    "",
    "1,5",
    "0x10",
    "1e16",
    10**15 + 1,
    -(10**15) - 1,
    Decimal("1000000000000000.5"),
    object(),
    [1],
    {"v": 1},
    1j,
]


@pytest.fixture
def held(billing: Autumn) -> Autumn:
    billing.attach("c", "m100")
    billing.attach("c", "credits100")
    billing.attach("c", "seats5")
    billing.entities.create("c", "e1", "users")
    billing.track("c", "messages", value=3)
    return billing


def assert_refused(billing: Autumn, error: type[AutumnError], call: Callable[[], object]) -> None:
    """Given the customer's state, when the call raises ``error``, then nothing has changed."""
    before = (billing.customers.get("c"), billing.events.list("c"), billing.invoices.list("c"))
    with pytest.raises(error):
        call()
    after = (billing.customers.get("c"), billing.events.list("c"), billing.invoices.list("c"))
    assert after == before


@pytest.mark.parametrize("bad", BAD_NUMBERS, ids=repr)
def test_bad_numbers_are_invalid_request_everywhere(held: Autumn, bad: Any) -> None:
    """Numbers: bool, NaN, infinities, None, non-numeric strings, |x| > 10^15 -> InvalidRequest."""
    calls: list[Callable[[], object]] = [
        lambda: held.track("c", "messages", value=bad),
        lambda: held.track("c", event_name="chat", value=bad),
        lambda: held.check("c", "messages", required_balance=bad),
        lambda: held.check("c", "messages", required_balance=bad, send_event=True),
        lambda: held.balances.set("c", "messages", remaining=bad),
        lambda: held.balances.set("c", "messages", usage=bad),
        lambda: held.balances.grant("c", "messages", bad),
    ]
    for call in calls:
        if bad is None and call is calls[4]:
            continue  # remaining=None means "not given": it is the both-missing error below
        assert_refused(held, InvalidRequest, call)


def test_values_at_the_limit_are_accepted(held: Autumn) -> None:
    """10^15 itself is a valid quantity; floats go through str (0.1 stays 0.1)."""
    r = held.track("c", "messages", value=10**15)
    assert r.applied == {"messages": Decimal(97)}
    r = held.track("c", "messages", value=-0.1)
    assert r.applied == {"messages": Decimal("-0.1")}


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.track("c", "nope"),
        lambda b: b.check("c", "nope"),
        lambda b: b.balances.set("c", "nope", remaining=1),
        lambda b: b.balances.grant("c", "nope", 1),
        lambda b: b.entities.create("c", "e2", "nope"),
        lambda b: b.track("c", event_name="nobody-listens"),
        lambda b: b.track("c", 42),
        lambda b: b.check("c", None),
    ],
    ids=["track", "check", "set", "grant", "entity", "event_name", "int-id", "none-id"],
)
def test_unknown_features_are_feature_not_found(
    held: Autumn, call: Callable[[Autumn], object]
) -> None:
    """R1/K1/B1/EN1: an unknown feature or an event nobody listens to -> FeatureNotFound."""
    assert_refused(held, FeatureNotFound, lambda: call(held))


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.track("c", "messages", entity_id="ghost"),
        lambda b: b.track("c", event_name="chat", entity_id="ghost"),
        lambda b: b.check("c", "messages", entity_id="ghost"),
        lambda b: b.check("c", "messages", entity_id="ghost", send_event=True),
        lambda b: b.balances.set("c", "messages", remaining=1, entity_id="ghost"),
        lambda b: b.balances.grant("c", "messages", 1, entity_id="ghost"),
        lambda b: b.entities.delete("c", "ghost"),
        lambda b: b.entities.get("c", "ghost"),
    ],
)
def test_unknown_entities_are_entity_not_found(
    held: Autumn, call: Callable[[Autumn], object]
) -> None:
    """EN7: entities are never auto-created; an unknown one -> EntityNotFound."""
    assert_refused(held, EntityNotFound, lambda: call(held))


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.track("c", "messages", overage="drop"),
        lambda b: b.track("c", "messages", overage=None),
        lambda b: b.track("c", event_name="chat", overage="reject"),
        lambda b: b.track("c", "messages", event_name="chat"),
        lambda b: b.track("c"),
        lambda b: b.track("c", event_name=7),
        lambda b: b.track("c", "messages", entity_id="bad id"),
        lambda b: b.track("c", "messages", entity_id=""),
        lambda b: b.track("c", "messages", properties=["x"]),
        lambda b: b.track("c", "messages", idempotency_key=""),
        lambda b: b.track("c", "dashboard"),
        lambda b: b.check("c", "dashboard", send_event=True),
        lambda b: b.check("c", "messages", send_event="yes"),
        lambda b: b.track("c", "messages", timestamp=datetime(2025, 1, 1)),
        lambda b: b.track("c", "messages", timestamp="2025-01-01T00:00:00Z"),
        lambda b: b.balances.grant("c", "messages", 1, expires_at=datetime(2030, 1, 1)),
        lambda b: b.balances.grant("c", "messages", 1, expires_at=T0 - timedelta(days=1)),
        lambda b: b.balances.grant("c", "users", 1, reset="month"),
        lambda b: b.balances.grant("c", "messages", 1, reset="decade"),
        lambda b: b.balances.set("c", "messages"),
        lambda b: b.balances.set("c", "messages", remaining=1, usage=1),
        lambda b: b.balances.set("c", "words", remaining=1),  # no row for the subject
        lambda b: b.entities.create("c", "e2", "messages"),
        lambda b: b.entities.create("c", " ", "users"),
        lambda b: b.track("bad id", "messages"),
        lambda b: b.track("", "messages"),
        lambda b: b.track("x" * 256, "messages"),
    ],
)
def test_malformed_calls_are_invalid_request(
    held: Autumn, call: Callable[[Autumn], object]
) -> None:
    """R1/K7/B1/B4/C2/D15: malformed arguments and naive datetimes -> InvalidRequest."""
    assert_refused(held, InvalidRequest, lambda: call(held))


def test_a_non_member_never_touches_the_pool_and_reject_changes_nothing(held: Autumn) -> None:
    """CS3: messages is no member of credits; its rejected shortfall leaves everything as it was."""
    from autumn_core import InsufficientBalance

    assert_refused(
        held, InsufficientBalance, lambda: held.track("c", "messages", value=98, overage="reject")
    )
    assert held.customers.get("c").features["credits"].remaining == Decimal(100)


def test_refused_calls_do_not_auto_create(billing: Autumn) -> None:
    """C8 with a refused call: the customer that would be created does not exist afterwards."""
    from autumn_core import CustomerNotFound

    with pytest.raises(InvalidRequest):
        billing.track("new", "messages", value=float("nan"))
    with pytest.raises(EntityNotFound):
        billing.track("new", "messages", entity_id="ghost")
    with pytest.raises(InvalidRequest):
        billing.balances.set("new", "messages", remaining=1)
    with pytest.raises(CustomerNotFound):
        billing.customers.get("new")
