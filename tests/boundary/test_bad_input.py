"""Issue 19: one validation at the boundary, decided in the core before any store sees the
value: every store refuses the same inputs with ``InvalidRequest`` naming the value, and a
refused call changed nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import (
    Autumn,
    Catalog,
    Feature,
    InvalidRequest,
    Item,
    NotFound,
    Product,
    TrackRequest,
)
from tests.seats.conftest import T0, Make

PLUS_14 = timezone(timedelta(hours=14))
MINUS_14 = timezone(timedelta(hours=-14))


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def cyclic() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages"), Feature.allocated("users")],
        products=[
            Product(
                "free",
                default=True,
                items=[
                    Item.feature("messages", included=100, reset="month"),
                    Item.feature("users", included=5),
                ],
            ),
            Product("pro", items=[Item.feature("messages", included=500, reset="month")]),
        ],
    )


Call = Callable[[Autumn], object]

#: (label, call, a fragment of the message that names the bad value)
BAD: list[tuple[str, Call, str]] = [
    ("id lone surrogate", lambda b: b.customers.create("x\ud800"), r"'x\ud800'"),
    ("id NUL", lambda b: b.customers.create("x\x00"), r"'x\x00'"),
    ("name lone surrogate", lambda b: b.customers.create("n", name="a\udc00"), r"'a\udc00'"),
    ("name NUL", lambda b: b.customers.update("c", name="a\x00"), r"'a\x00'"),
    ("email surrogate", lambda b: b.customers.create("n", email="a\ud800@b.c"), r"\ud800"),
    ("fingerprint NUL", lambda b: b.customers.update("c", fingerprint="\x00"), r"'\x00'"),
    ("metadata object()", lambda b: b.customers.create("n", metadata={"k": object()}), "['k']"),
    ("metadata set", lambda b: b.customers.update("c", metadata={"k": {1}}), "{1}"),
    ("metadata NaN", lambda b: b.customers.create("n", metadata={"k": float("nan")}), "nan"),
    ("metadata deep", lambda b: b.customers.create("n", metadata=nested(5000)), "nested"),
    ("metadata cycle", lambda b: b.customers.update("c", metadata={"k": cyclic()}), "nested"),
    ("metadata int key", lambda b: b.customers.create("n", metadata={1: "a"}), "1"),
    ("metadata key surrogate", lambda b: b.customers.create("n", metadata={"\ud800": 1}), "ud800"),
    ("metadata value NUL", lambda b: b.customers.update("c", metadata={"k": ["\x00"]}), r"\x00"),
    ("metadata huge int", lambda b: b.customers.update("c", metadata={"k": 10**400}), "digits"),
    ("metadata Decimal", lambda b: b.customers.update("c", metadata={"k": Decimal(1)}), "Decimal"),
    ("properties object()", lambda b: b.track("c", "messages", properties={"o": object()}), "'o'"),
    ("properties inf", lambda b: b.track("c", "messages", properties={"k": float("inf")}), "inf"),
    ("properties deep", lambda b: b.track("c", "messages", properties=nested(3000)), "nested"),
    (
        "properties surrogate",
        lambda b: b.track("c", "messages", properties={"k": "\udfff"}),
        "udfff",
    ),
    ("value 1e999999999", lambda b: b.track("c", "messages", value="1e999999999"), "1e999999999"),
    ("value -1e999999999", lambda b: b.track("c", "messages", value="-1e999999999"), "1e999999999"),
    (
        "value 1e-999999999",
        lambda b: b.track("c", "messages", value="1e-999999999"),
        "1e-999999999",
    ),
    (
        "value 13 places",
        lambda b: b.track("c", "messages", value="0.1234567890123"),
        "0.1234567890123",
    ),
    (
        "grant 1e999999999",
        lambda b: b.balances.grant("c", "messages", "1e999999999"),
        "1e999999999",
    ),
    (
        "set 13 places",
        lambda b: b.balances.set("c", "messages", remaining="1.0000000000001"),
        "1.0000000000001",
    ),
    (
        "timestamp year 1 +14:00",
        lambda b: b.track("c", "messages", timestamp=datetime(1, 1, 1, tzinfo=PLUS_14)),
        "datetime.datetime(1, 1, 1",
    ),
    (
        "timestamp 9999 -14:00",
        lambda b: b.track("c", "messages", timestamp=datetime(9999, 12, 31, 23, tzinfo=MINUS_14)),
        "datetime.datetime(9999, 12, 31, 23",
    ),
    (
        "events.list start year 1 +14:00",
        lambda b: b.events.list("c", start=datetime(1, 1, 1, tzinfo=PLUS_14)),
        "datetime.datetime(1, 1, 1",
    ),
    ("track_many(5)", lambda b: b.track_many(5), "5"),  # type: ignore[arg-type]
    ("track_many(str)", lambda b: b.track_many("c"), "'c'"),  # type: ignore[arg-type]
    (
        "track_many bad item",
        lambda b: b.track_many([TrackRequest("c", "messages", properties={"k": {1, 2}})]),
        "{1, 2}",
    ),
    (
        "idempotency key surrogate",
        lambda b: b.track("c", "messages", idempotency_key="\ud800"),
        "ud800",
    ),
    ("attach key NUL", lambda b: b.attach("c", "pro", idempotency_key="k\x00"), r"'k\x00'"),
    ("success_url surrogate", lambda b: b.attach("c", "pro", success_url="\ud800"), "ud800"),
    ("entity id surrogate", lambda b: b.entities.create("c", "e\ud800", "users"), "ud800"),
    ("entity name NUL", lambda b: b.entities.create("c", "e", "users", name="\x00"), r"'\x00'"),
    ("events feature NUL", lambda b: b.events.list("c", feature_id="m\x00"), r"'m\x00'"),
]


def snapshot(billing: Autumn) -> tuple[Any, ...]:
    return (
        billing.customers.list(),
        billing.events.list("c"),
        billing.invoices.list("c"),
    )


@pytest.mark.parametrize(("label", "call", "names"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_the_same_on_every_store(
    make: Make, label: str, call: Call, names: str
) -> None:
    # given a customer with some usage
    billing = make(catalog())
    billing.customers.create("c", metadata={"k": "v"})
    billing.track("c", "messages", value=3, properties={"p": 1})
    before = snapshot(billing)
    # when the bad value is passed, then InvalidRequest names it, and nothing changed
    with pytest.raises(InvalidRequest) as raised:
        call(billing)
    assert names in raised.value.message, raised.value.message
    assert snapshot(billing) == before


def test_events_list_after_an_unknown_event_raises(make: Make) -> None:
    billing = make(catalog())
    billing.track("c", "messages", value=1)
    billing.track("c", "messages", value=2)
    first, last = billing.events.list("c")
    # a known id pages on, the last one gives an empty page, an unknown one raises
    assert billing.events.list("c", starting_after=first.id) == [last]
    assert billing.events.list("c", starting_after=last.id) == []
    assert billing.events.list("c", starting_after=first.id, feature_id="users") == []
    with pytest.raises(NotFound, match="evt_unknown"):
        billing.events.list("c", starting_after="evt_unknown")


def test_a_clock_in_late_9999_is_refused_and_changes_nothing(make: Make) -> None:
    # given a customer, then a clock moved to the last hours of year 9999
    billing = make(catalog())
    billing.track("c", "messages", value=3)
    before = snapshot(billing)
    clock = billing.clock
    clock.set(datetime(9999, 12, 31, 20, tzinfo=UTC))  # type: ignore[attr-defined]
    # when anything runs, then InvalidRequest names the time read
    for call in (
        lambda: billing.track("c", "messages"),
        lambda: billing.customers.get("c"),
        lambda: billing.process_due(),
        lambda: billing.attach("c", "pro"),
    ):
        with pytest.raises(InvalidRequest, match=r"datetime\.datetime\(9999, 12, 31, 20"):
            call()
    # and nothing changed
    clock.set(T0)  # type: ignore[attr-defined]
    assert snapshot(billing) == before
