"""Billing controls and locks on the wire: ``billing_controls`` in and out, ``lock`` on
``balances.check``, and ``balances.finalize`` (Autumn's shapes; the engine checks the values)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from autumn_core import UNSET
from autumn_wire.body import Body
from autumn_wire.errors import invalid_inputs
from autumn_wire.shapes import Json

#: Keys Autumn's responses carry on control entries and a client may echo back: read, ignored.
_RESPONSE_ONLY = ("source", "usage")


def read_controls(b: Body) -> Any:
    """The body's ``billing_controls`` (UNSET when absent), as the engine's dict shape."""
    if not b.has("billing_controls"):
        return UNSET
    raw = b.obj("billing_controls")
    if raw is None:
        return UNSET
    return {
        key: [
            {k: v for k, v in entry.items() if k not in _RESPONSE_ONLY and v is not None}
            if isinstance(entry, dict)
            else entry
            for entry in value
        ]
        if isinstance(value, list)
        else value
        for key, value in raw.items()
    }


def read_lock(b: Body) -> dict[str, Any] | None:
    """``lock{lock_id, enabled, expires_at (ms), overage_behavior}`` for ``Autumn.check``."""
    raw = b.obj("lock")
    if raw is None:
        return None
    lock = dict(raw)
    expires = lock.get("expires_at")
    if expires is not None:
        if isinstance(expires, bool) or not isinstance(expires, int | float | Decimal):
            raise invalid_inputs(f"lock.expires_at: expected a number (ms), got {expires!r}")
        try:
            lock["expires_at"] = datetime.fromtimestamp(float(expires) / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise invalid_inputs(f"lock.expires_at: out of range: {expires!r}") from None
    return lock


def finalize(w: Any, b: Body, idem: str | None) -> Json:
    """``POST /v1/balances.finalize``: confirm or release a lock."""
    lock_id = b.req_str("lock_id")
    action = b.req_str("action")
    value = b.num("override_value")
    properties = b.obj("properties")
    b.done()
    w.billing.balances.finalize(lock_id, action, override_value=value, properties=properties)
    return {"success": True}


def update_entity(w: Any, b: Body, idem: str | None) -> Json:
    """``POST /v1/entities.update``: an entity's ``billing_controls`` (and name)."""
    eid = b.req_str("entity_id")
    cid = b.str_("customer_id")
    if cid is None:
        raise invalid_inputs(
            "customer_id: required by the embedded engine (entity ids are per customer)"
        )
    controls = read_controls(b)
    kwargs: dict[str, Any] = {"billing_controls": controls}
    if b.has("name"):
        kwargs["name"] = b.str_("name")
    b.done()
    out: Json = w.shapes.entity(w.billing.entities.update(cid, eid, **kwargs))
    return out
