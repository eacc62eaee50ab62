"""The billing RPCs: attach, its preview, billing.update (changes, quantities, cancel), the
customer portal and payment setup."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from autumn_core import UNSET, AttachResult, FreeTrial
from autumn_wire.body import Body, sub
from autumn_wire.errors import WireError, invalid_inputs
from autumn_wire.ops import Wire, customer_data
from autumn_wire.shapes import Json, ms, num

#: Attach keys that only matter to Autumn's Stripe flows or its dashboard: read and ignored.
_ATTACH_IGNORED = ("metadata", "checkout_session_params", "proration_behavior")
_REDIRECT = ("always", "if_required", "never")


def _quantities(b: Body, key: str = "feature_quantities") -> dict[str, Decimal] | None:
    items = b.list_(key)
    if items is None:
        return None
    out: dict[str, Decimal] = {}
    for i, raw in enumerate(items):
        q = sub(f"{key}[{i}]", raw)
        fid = q.req_str("feature_id")
        qty = q.num("quantity")
        q.bool_("adjustable")
        q.done()
        if qty is not None:
            out[fid] = qty
    return out


def _free_trial(b: Body) -> Any:
    if not b.has("free_trial"):
        b.raw("free_trial")
        return UNSET
    raw = b.raw("free_trial")
    if raw is None:
        return None  # Autumn: null skips the plan's trial
    t = sub("free_trial", raw)
    length = t.int_("duration_length", low=1, high=3650)
    if length is None:
        raise invalid_inputs("free_trial.duration_length: required")
    duration = t.enum("duration_type", ("day", "week", "month", "year")) or "month"
    card = t.bool_("card_required")
    t.enum("on_end", ("bill",))
    t.done()
    return FreeTrial(length, duration=duration, card_required=card)


def _attach_args(b: Body, *, plan_key: str = "plan_id") -> dict[str, Any]:
    for key in _ATTACH_IGNORED:
        b.raw(key)
    redirect = b.enum("redirect_mode", _REDIRECT)
    if b.bool_("no_billing_changes"):
        raise invalid_inputs("no_billing_changes: not supported by the embedded Autumn engine")
    b.bool_("enable_plan_immediately")
    return {
        "customer_id": b.req_str("customer_id"),
        "product_id": b.req_str(plan_key),
        "entity_id": b.str_("entity_id"),
        "quantities": _quantities(b),
        "free_trial": _free_trial(b),
        "success_url": b.str_("success_url"),
        "force_checkout": redirect == "always",
        "customer_data": customer_data(b),
        "version": b.int_("version", low=1, high=1_000_000),
    }


def _attach_response(r: AttachResult, cid: str, eid: str | None) -> Json:
    inv = r.invoice
    return {
        "customer_id": cid,
        "entity_id": eid,
        "payment_url": r.checkout_url,
        "invoice": None
        if inv is None
        else {
            "status": inv.status,
            "stripe_id": inv.gateway_invoice_id or inv.id,
            "total": num(inv.total),
            "currency": inv.currency,
            "hosted_invoice_url": None,
        },
        "required_action": None,
    }


def _conflict_if_replayed(r: AttachResult, key: str | None) -> None:
    if r.replayed:  # the store saw this key from another process: Autumn answers 409
        raise WireError(
            409,
            "duplicate_idempotency_key",
            f"Another request with idempotency key {key} has already been received",
        )


def attach(w: Wire, b: Body, idem: str | None) -> Json:
    args = _attach_args(b)
    b.done()
    r = w.billing.attach(idempotency_key=idem, **args)
    _conflict_if_replayed(r, idem)
    return _attach_response(r, args["customer_id"], args["entity_id"])


def preview_attach(w: Wire, b: Body, idem: str | None) -> Json:
    args = _attach_args(b)
    b.done()
    return _preview(w, args)


def _preview(w: Wire, args: dict[str, Any]) -> Json:
    p = w.billing.preview_attach(**args)
    cid, eid, pid = args["customer_id"], args["entity_id"], args["product_id"]
    outgoing: list[Json] = []
    if p.scenario in ("upgrade", "downgrade"):
        held = (
            w.billing.entities.get(cid, eid).products
            if eid is not None
            else w.billing.customers.get(cid).products
        )
        product = w.billing.catalog.product(pid)
        group = product.group if product is not None else ""
        outgoing = [
            _change(cp.id, cp.quantities, None, ms(cp.canceled_at), ms(cp.ends_at))
            for cp in held
            if not cp.add_on and cp.group == group and cp.status != "scheduled" and cp.id != pid
        ]
    return {
        "customer_id": cid,
        "line_items": [_line(ln, pid) for ln in p.lines],
        "subtotal": num(p.due_now),
        "total": num(p.due_now),
        "currency": w.shapes.currency,
        "incoming": [_change(pid, args["quantities"] or {}, None, None, None)],
        "outgoing": outgoing,
        "redirect_to_checkout": False,
        "checkout_type": None,
        "next_cycle": None
        if p.next_cycle_at is None
        else {
            "starts_at": ms(p.next_cycle_at),
            "subtotal": num(p.next_cycle_total),
            "total": num(p.next_cycle_total),
            "line_items": [],
            "usage_line_items": [],
        },
    }


def _change(
    plan_id: str,
    quantities: dict[str, Decimal],
    effective: int | None,
    canceled: int | None,
    expires: int | None,
) -> Json:
    return {
        "plan_id": plan_id,
        "feature_quantities": [
            {"feature_id": k, "quantity": num(v)} for k, v in quantities.items()
        ],
        "effective_at": effective,
        "canceled_at": canceled,
        "expires_at": expires,
    }


_CANCEL = ("cancel_immediately", "cancel_end_of_cycle", "uncancel")


def update(w: Wire, b: Body, idem: str | None) -> Json:
    """billing.update: cancel / uncancel a plan, or change to a plan or to new quantities."""
    action = b.enum("cancel_action", _CANCEL)
    cid = b.req_str("customer_id")
    eid = b.str_("entity_id")
    pid = b.str_("plan_id") or b.str_("subscription_id")
    if pid is None:
        raise invalid_inputs("plan_id: required")
    if action is not None:
        b.enum("refund_last_payment", ("prorated",))
        b.enum("redirect_mode", _REDIRECT)
        b.raw("proration_behavior")
        b.done()
        if action == "uncancel":
            w.billing.uncancel(cid, pid, entity_id=eid)
        else:
            w.billing.cancel(cid, pid, entity_id=eid, immediately=action == "cancel_immediately")
        return {"customer_id": cid, "entity_id": eid, "payment_url": None}
    args = _attach_args(b)
    b.done()
    r = w.billing.attach(idempotency_key=idem, **args)
    _conflict_if_replayed(r, idem)
    return _attach_response(r, cid, eid)


_INTENTS = {"update_quantity": "update_quantity", "upgrade": "update_plan"}


def preview_update(w: Wire, b: Body, idem: str | None) -> Json:
    """billing.preview_update: what billing.update would do; changes nothing."""
    action = b.enum("cancel_action", _CANCEL)
    cid = b.req_str("customer_id")
    eid = b.str_("entity_id")
    pid = b.str_("plan_id") or b.str_("subscription_id")
    if pid is None:
        raise invalid_inputs("plan_id: required")
    if action is None:
        args = _attach_args(b)
        b.done()
        out = _preview(w, args)
        scenario = w.billing.preview_attach(**args).scenario
        out["intent"] = _INTENTS.get(scenario, "update_plan")
        return out
    b.enum("refund_last_payment", ("prorated",))
    b.enum("redirect_mode", _REDIRECT)
    b.raw("proration_behavior")
    b.done()
    held = (
        w.billing.entities.get(cid, eid).products
        if eid is not None
        else w.billing.customers.get(cid).products
    )
    cp = next((p for p in held if p.id == pid and p.status != "scheduled"), None)
    if action == "uncancel":
        if cp is None:
            raise WireError(404, "cus_product_not_found", f"Plan {pid} not found for {cid}")
        lines: list[Any] = []
        total = Decimal(0)
    else:
        p = w.billing.preview_cancel(
            cid, pid, entity_id=eid, immediately=action == "cancel_immediately"
        )
        lines, total = p.lines, p.due_now
    now = ms(w.billing.clock.now())
    ends = now if action == "cancel_immediately" else (None if cp is None else ms(cp.ends_at))
    if action == "cancel_end_of_cycle" and cp is not None:
        ends = ms(cp.trial_ends_at or cp.current_period_end)
    quantities = {} if cp is None else cp.quantities
    return {
        "customer_id": cid,
        "line_items": [_line(ln, pid) for ln in lines],
        "subtotal": num(total),
        "total": num(total),
        "currency": w.shapes.currency,
        "incoming": [_change(pid, quantities, now, None, None)] if action == "uncancel" else [],
        "outgoing": [] if action == "uncancel" else [_change(pid, quantities, ends, now, ends)],
        "intent": action,
    }


def _line(ln: Any, plan_id: str) -> Json:
    return {
        "display_name": ln.description,
        "description": ln.description,
        "subtotal": num(ln.amount),
        "total": num(ln.amount),
        "plan_id": ln.product_id or plan_id,
        "feature_id": ln.feature_id,
        "quantity": num(ln.quantity),
    }


def open_customer_portal(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.req_str("customer_id")
    b.str_("configuration_id")
    return_url = b.str_("return_url")
    b.done()
    url = w.billing.billing_portal_url(cid, return_url)
    return {"customer_id": cid, "url": url}


def setup_payment(w: Wire, b: Body, idem: str | None) -> Json:
    """With a plan: a checkout for it; without: the provider's portal, where a card is added."""
    if b.str_("plan_id") is None:
        cid = b.req_str("customer_id")
        eid = b.str_("entity_id")
        success_url = b.str_("success_url")
        b.done()
        url = w.billing.billing_portal_url(cid, success_url)
        return {"customer_id": cid, "entity_id": eid, "url": url}
    args = _attach_args(b)
    b.done()
    args["force_checkout"] = True
    r = w.billing.attach(idempotency_key=idem, **args)
    _conflict_if_replayed(r, idem)
    if r.checkout_url is None:
        raise WireError(400, "invalid_request", "no payment setup is needed for this plan")
    return {
        "customer_id": args["customer_id"],
        "entity_id": args["entity_id"],
        "url": r.checkout_url,
    }
