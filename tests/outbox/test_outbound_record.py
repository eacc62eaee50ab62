"""The outgoing event record (EO1) and emitting it inside a unit of work (EO2)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from autumn_core import Autumn, InvalidRequest, ManualClock
from autumn_core.app.unit import NeedsWrite, Unit
from autumn_core.outbound import (
    BILLING_AUTO_TOPUP_SUCCEEDED,
    CUSTOMER_PRODUCTS_UPDATED,
    EVENT_TYPES,
    OutboundEvent,
    parse_json,
)
from tests.conftest import T0


def _event(**over: object) -> OutboundEvent:
    fields: dict[str, object] = {
        "id": "wev_1",
        "type": BILLING_AUTO_TOPUP_SUCCEEDED,
        "customer_id": "ann",
        "entity_id": None,
        "occurred_at": T0,
        "data": {
            "feature_id": "credits",
            "quantity_granted": Decimal("1000"),
            "total": Decimal("12.50"),
        },
    }
    fields.update(over)
    return OutboundEvent(**fields)  # type: ignore[arg-type]


def test_the_types_carry_autumns_webhook_names() -> None:
    assert {
        "customer.products.updated",
        "balances.limit_reached",
        "balances.usage_alert_triggered",
        "billing.auto_topup_succeeded",
        "billing.auto_topup_failed",
    } <= set(EVENT_TYPES)


def test_the_wire_form_is_autumns_envelope_with_exact_numbers() -> None:
    # given an event with decimal amounts
    event = _event(entity_id="seat-1")
    # when it is rendered
    body = event.body()
    # then it is {type, id, occurred_at ms, data} with customer and entity in data, exactly
    assert body == (
        b'{"type":"billing.auto_topup_succeeded","id":"wev_1","occurred_at":1741597200000,'
        b'"data":{"customer_id":"ann","entity_id":"seat-1","feature_id":"credits",'
        b'"quantity_granted":1000,"total":12.5}}'
    )
    assert parse_json(body)["data"]["total"] == Decimal("12.5")


def test_an_unknown_type_or_data_that_is_not_json_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="unknown outbound event type 'nope'"):
        _event(type="nope")
    with pytest.raises(InvalidRequest, match=r"data\.when is not JSON-able"):
        _event(data={"when": T0})
    with pytest.raises(InvalidRequest, match="not a finite number"):
        _event(data={"x": Decimal("NaN")})


def test_the_record_is_frozen_and_its_data_is_a_copy() -> None:
    data = {"feature_id": "credits"}
    event = _event(data=data)
    data["feature_id"] = "changed"
    assert event.data == {"feature_id": "credits"}
    with pytest.raises(AttributeError):
        event.type = CUSTOMER_PRODUCTS_UPDATED  # type: ignore[misc]


def test_ids_are_unique_and_sort_by_creation() -> None:
    ids = [OutboundEvent.new_id() for _ in range(200)]
    assert len(set(ids)) == 200
    assert ids == sorted(ids)


def test_a_write_unit_records_what_it_emits_at_the_clocks_instant(
    billing: Autumn, clock: ManualClock
) -> None:
    # given a write unit of work
    clock.advance(minutes=5)

    def body(unit: Unit) -> list[OutboundEvent]:
        unit.emit(CUSTOMER_PRODUCTS_UPDATED, {"scenario": "new"}, customer_id="ann")
        return list(unit.outbound)

    # when a use case emits an event in it
    emitted = billing._write(body)
    # then the unit holds it, dated by the engine's clock, with a fresh id
    assert [(e.type, e.customer_id, e.entity_id, e.occurred_at, dict(e.data)) for e in emitted] == [
        (CUSTOMER_PRODUCTS_UPDATED, "ann", None, clock.now(), {"scenario": "new"})
    ]
    assert emitted[0].id.startswith("wev_")


def test_a_read_unit_cannot_emit(billing: Autumn) -> None:
    def body(unit: Unit) -> None:
        unit.emit(CUSTOMER_PRODUCTS_UPDATED, customer_id="ann")

    with pytest.raises(NeedsWrite):
        billing._ctx.run(lambda tx: body(Unit(billing._ctx, tx, write=False)), write=False)
