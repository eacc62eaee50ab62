"""What the engine tells the application: outgoing events (the events-out rules, EO1-EO4).

A use case emits an ``OutboundEvent`` inside its unit of work (``unit.emit``); the event is
written to the store's outbox in the same transaction as the change it reports, so a change
that rolls back sends nothing and a committed change is never lost. Subscribers (in-process
callables, signed HTTP webhooks) receive the events from the outbox, at least once, each with
its stable ``id``.

The event types carry Autumn's webhook names where Autumn has one (``customer.products.updated``,
``balances.limit_reached``, ``balances.usage_alert_triggered``,
``billing.auto_topup_succeeded``/``failed``); the rest follow the same ``noun.verb`` style.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import attrs

from autumn_core.errors import InvalidRequest

#: A customer's products changed: attached, upgraded, downgraded, scheduled, cancelled,
#: renewed into a scheduled product, or expired (Autumn's ``customer.products.updated``).
CUSTOMER_PRODUCTS_UPDATED: Final = "customer.products.updated"
#: A balance reached a limit: its included allowance, its max purchase, a spend or usage limit.
BALANCES_LIMIT_REACHED: Final = "balances.limit_reached"
#: A usage alert's threshold was crossed.
BALANCES_USAGE_ALERT_TRIGGERED: Final = "balances.usage_alert_triggered"
#: An automatic top-up charged the customer and granted the balance.
BILLING_AUTO_TOPUP_SUCCEEDED: Final = "billing.auto_topup_succeeded"
#: An automatic top-up was declined or blocked (its ``reason`` says which).
BILLING_AUTO_TOPUP_FAILED: Final = "billing.auto_topup_failed"
#: An invoice was paid (an attach, a renewal, a top-up, a checkout, a provider payment).
INVOICE_PAID: Final = "invoice.paid"
#: A payment failed (a declined charge or renewal, a provider's failed payment).
INVOICE_PAYMENT_FAILED: Final = "invoice.payment_failed"
#: A trial ends soon (sent once per trial, a set time before its end).
CUSTOMER_TRIAL_ENDING: Final = "customer.trial_ending"

EVENT_TYPES: Final = (
    CUSTOMER_PRODUCTS_UPDATED,
    BALANCES_LIMIT_REACHED,
    BALANCES_USAGE_ALERT_TRIGGERED,
    BILLING_AUTO_TOPUP_SUCCEEDED,
    BILLING_AUTO_TOPUP_FAILED,
    INVOICE_PAID,
    INVOICE_PAYMENT_FAILED,
    CUSTOMER_TRIAL_ENDING,
)


_ids_lock = threading.Lock()
_last_micros = 0


def _check_type(_: Any, __: Any, value: str) -> None:
    if value not in EVENT_TYPES:
        raise InvalidRequest(
            f"unknown outbound event type {value!r}; expected one of {EVENT_TYPES}"
        )


def _check_data(_: Any, __: Any, value: Mapping[str, Any]) -> None:
    _json_value(value, "data")


def _json_value(value: Any, where: str) -> None:
    if value is None or isinstance(value, bool | int | str | Decimal):
        if isinstance(value, Decimal) and not value.is_finite():
            raise InvalidRequest(f"{where} is not a finite number: {value!r}")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRequest(f"{where} has a non-string key {key!r}")
            _json_value(item, f"{where}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _json_value(item, f"{where}[{i}]")
        return
    raise InvalidRequest(
        f"{where} is not JSON-able (str, int, Decimal, bool, None, list, dict): {value!r}"
    )


def _frozen_data(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value)


@attrs.frozen
class OutboundEvent:
    """One outgoing event (EO1). ``id`` is stable: every delivery of the event carries it, so a
    receiver deduplicates on it (delivery is at least once, EO4)."""

    id: str
    type: str = attrs.field(validator=_check_type)
    customer_id: str | None
    entity_id: str | None
    #: The instant of the change, from the engine's clock (``unit.now``).
    occurred_at: datetime
    #: The payload: JSON values, with ``Decimal`` for amounts and quantities (rendered as JSON
    #: numbers, exactly). ``customer_id`` and ``entity_id`` are added to it on the wire.
    data: Mapping[str, Any] = attrs.field(converter=_frozen_data, validator=_check_data)

    @staticmethod
    def new_id() -> str:
        """A unique id that sorts by creation time: wall-clock microseconds, strictly growing
        within a process, then random bits that keep ids of several processes unique. The wall
        clock only orders ids; the event's time is ``occurred_at``, from the engine's clock."""
        global _last_micros
        with _ids_lock:
            _last_micros = max(_last_micros + 1, time.time_ns() // 1000)
            micros = _last_micros
        return f"wev_{micros:014x}{os.urandom(8).hex()}"

    def payload(self) -> dict[str, Any]:
        """The wire form, Autumn's webhook envelope: ``{type, id, occurred_at (ms), data}``."""
        data: dict[str, Any] = {"customer_id": self.customer_id}
        if self.entity_id is not None:
            data["entity_id"] = self.entity_id
        data.update(self.data)
        return {
            "type": self.type,
            "id": self.id,
            "occurred_at": _millis(self.occurred_at),
            "data": data,
        }

    def body(self) -> bytes:
        """The payload as compact JSON bytes (the bytes a webhook signs and sends)."""
        return render_json(self.payload()).encode()


def _millis(at: datetime) -> int:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def render_json(value: Any) -> str:
    """Compact JSON with ``Decimal`` written as an exact JSON number (never through float)."""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if isinstance(value, Mapping):
        return (
            "{" + ",".join(f"{json.dumps(str(k))}:{render_json(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(render_json(v) for v in value) + "]"
    return json.dumps(value)


def parse_json(text: str | bytes) -> Any:
    """The inverse of ``render_json``: fractional numbers come back as ``Decimal``."""
    return json.loads(text, parse_float=Decimal)


__all__ = [
    "BALANCES_LIMIT_REACHED",
    "BALANCES_USAGE_ALERT_TRIGGERED",
    "BILLING_AUTO_TOPUP_FAILED",
    "BILLING_AUTO_TOPUP_SUCCEEDED",
    "CUSTOMER_PRODUCTS_UPDATED",
    "CUSTOMER_TRIAL_ENDING",
    "EVENT_TYPES",
    "INVOICE_PAID",
    "INVOICE_PAYMENT_FAILED",
    "OutboundEvent",
    "parse_json",
    "render_json",
]
