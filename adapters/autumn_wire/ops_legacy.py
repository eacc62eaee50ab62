"""The legacy REST aliases Autumn still serves under ``/v1`` (autumn-py, autumn-python, its
dashboard): translated to the RPC operations, answered in their 2.0 shapes."""

from __future__ import annotations

from typing import Any

from autumn_wire import ops, ops_billing
from autumn_wire.body import Body
from autumn_wire.errors import invalid_inputs
from autumn_wire.ops import Wire
from autumn_wire.shapes import Json


def attach(w: Wire, b: Body, idem: str | None) -> Json:
    """``POST /v1/attach``: ``product_id`` and ``options`` are the RPC ``plan_id`` and
    ``feature_quantities``; ``force_checkout`` is ``redirect_mode: "always"``."""
    data: dict[str, Any] = dict(b.data)
    plan_id = data.pop("product_id", None)
    data["plan_id"] = plan_id
    if "options" in data:
        data["feature_quantities"] = data.pop("options")
    force = data.pop("force_checkout", None)
    if force is not None and not isinstance(force, bool):
        raise invalid_inputs(f"force_checkout: expected true or false, got {force!r}")
    if force:
        data["redirect_mode"] = "always"
    out = ops_billing.attach(w, Body(data), idem)
    return {
        "success": True,
        "customer_id": out["customer_id"],
        "product_ids": [plan_id],
        "code": "checkout_created" if out["payment_url"] else "attach_success",
        "message": f"Successfully attached {plan_id}",
        "checkout_url": out["payment_url"],
        "invoice": out["invoice"],
    }


def cancel(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.req_str("customer_id")
    pid = b.req_str("product_id")
    eid = b.str_("entity_id")
    now = b.bool_("cancel_immediately")
    b.bool_("prorate", default=True)
    b.done()
    w.billing.cancel(cid, pid, entity_id=eid, immediately=now)
    return {"success": True, "customer_id": cid, "product_id": pid}


def create_customer(w: Wire, b: Body, idem: str | None) -> Json:
    """``POST /v1/customers``: ``id`` is the RPC ``customer_id`` (get-or-create)."""
    data: dict[str, Any] = dict(b.data)
    data["customer_id"] = data.pop("id", None)
    return ops.get_or_create(w, Body(data), idem)


def list_customers(w: Wire, b: Body, idem: str | None) -> Json:
    """``GET /v1/customers?limit=``: the first page, in the 1.2 shape."""
    out = ops.list_customers(w, b, idem)
    n = len(out["list"])
    return {"list": out["list"], "limit": n, "offset": 0, "total": n}
