"""Payment-provider events (DOMAIN.md W1-W6): each event id is applied at most once.

Events never move periods or reset rows (D7): the library owns periods. Each event is applied
in its own transaction together with the store's record of its id (``claim_gateway_event``),
so a repeat, whatever the order, changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from autumn_core.app import attach as attach_uc
from autumn_core.app import billing
from autumn_core.app.cancel import cancel_instance
from autumn_core.app.provisioning import (
    activate_successor,
    drop_products,
    expire,
    replace_product,
)
from autumn_core.app.unit import Unit
from autumn_core.errors import InvalidRequest
from autumn_core.model import CustomerState, InvoiceRecord, ProductState
from autumn_core.results import GatewayEvent

EVENT_TYPES = (
    "checkout.completed",
    "payment.succeeded",
    "payment.failed",
    "subscription.updated",
    "subscription.deleted",
)
PAST_DUE = ("past_due", "unpaid", "incomplete", "paused")
ENDED = ("canceled", "incomplete_expired")


def validate(event: Any) -> GatewayEvent:
    if not isinstance(event, GatewayEvent):
        raise InvalidRequest(f"handle_event takes a GatewayEvent, got {event!r}")
    if not isinstance(event.id, str) or not event.id:
        raise InvalidRequest(f"a gateway event needs an id, got {event.id!r}")
    return event


def _meta(data: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = data.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _pending_key(data: Mapping[str, Any]) -> str | None:
    for value in (
        data.get("pending_key"),
        data.get("client_reference_id"),
        _meta(data).get("autumn_pending_key"),
    ):
        if isinstance(value, str) and value:
            return value
    return None


def _invoice(unit: Unit, data: Mapping[str, Any]) -> InvoiceRecord | None:
    engine_id = _meta(data).get("autumn_invoice_id") or data.get("invoice_id")
    if isinstance(engine_id, str) and engine_id:
        found = unit.tx.get_invoice(engine_id)
        if found is not None:
            return found
    gid = data.get("id")
    if isinstance(gid, str) and gid:
        return unit.tx.find_invoice_by_gateway_id(gid)
    return None


def handle_event(unit: Unit, event: GatewayEvent) -> None:
    if not unit.tx.claim_gateway_event(event.id):
        return  # W1: applied before
    data: Mapping[str, Any] = event.data or {}
    kind = event.type
    if kind == "checkout.completed":
        _run_pending(unit, data, invoice=data.get("invoice"), subscription=data.get("subscription"))
    elif kind == "payment.succeeded":
        if not _run_pending(unit, data, invoice=data.get("id")):
            _paid(unit, data)
    elif kind == "payment.failed":
        _failed(unit, data)
    elif kind == "subscription.updated":
        _subscription_updated(unit, event, data)
    elif kind == "subscription.deleted":
        state = _customer_of(unit, event, data)
        if state is not None:
            unit.put(_end_cycle(unit, state, data))
    # Other types are recorded (so they are not re-examined) and ignored.


def _run_pending(
    unit: Unit, data: Mapping[str, Any], *, invoice: Any, subscription: Any = None
) -> bool:
    """W2/W3/CO5: the stored checkout plan runs exactly once, without charging again.

    ``subscription``: the provider subscription the checkout started (Stripe's Checkout
    Session in ``mode=subscription``: its ``subscription``, an id or the expanded object;
    None in payment mode). The products it provisions are billed through it, as a charge
    outcome's ``subscriptions`` would say (W6).
    """
    key = _pending_key(data)
    if key is None:
        return False
    pending = unit.tx.get_pending(key)
    if pending is None or pending.kind != attach_uc.CHECKOUT:
        return key is not None and pending is None and _already_ran(data)
    done = attach_uc.complete_pending(unit, pending, invoice if isinstance(invoice, str) else None)
    sub_id = subscription.get("id") if isinstance(subscription, Mapping) else subscription
    if done and isinstance(sub_id, str) and sub_id:
        state = unit.find_pk(pending.customer_pk)
        product_id = pending.payload["product_id"]
        unit.put(billing.record_subscriptions(unit.ctx, state, {product_id: sub_id}))
    return True


def _already_ran(data: Mapping[str, Any]) -> bool:
    # A checkout's payment event after its checkout.completed: nothing left to do.
    return _meta(data).get("autumn_invoice_id") is None


def _paid(unit: Unit, data: Mapping[str, Any]) -> None:
    """W3: the invoice is paid; the past-due product it billed is active again."""
    inv = _invoice(unit, data)
    if inv is None:
        return
    if inv.status != "paid":
        unit.tx.save_invoice(attrs.evolve(inv, status="paid"))
    state = unit.find_pk(inv.customer_pk)
    cp = state.product_instance(inv.cp_id) if inv.cp_id else None
    if cp is not None and cp.status == "past_due":
        unit.put(replace_product(state, attrs.evolve(cp, status="active")))


def _failed(unit: Unit, data: Mapping[str, Any]) -> None:
    """W4: a failed first charge never provisions; a renewal's product becomes past due."""
    key = _pending_key(data)
    if key is not None:
        pending = unit.tx.get_pending(key)
        if pending is not None:
            attach_uc.fail_pending(unit, pending)
            return
    inv = _invoice(unit, data)
    if inv is None:
        return
    if inv.status == "paid":
        unit.tx.save_invoice(attrs.evolve(inv, status="open"))
    state = unit.find_pk(inv.customer_pk)
    cp = state.product_instance(inv.cp_id) if inv.cp_id else None
    if cp is not None and cp.status == "active":
        unit.put(replace_product(state, attrs.evolve(cp, status="past_due")))


def _customer_of(unit: Unit, event: GatewayEvent, data: Mapping[str, Any]) -> CustomerState | None:
    """The customer a provider event is about, by its provider customer id."""
    gid = event.gateway_customer_id
    meta_pk = _meta(data).get("autumn_customer_pk")
    if isinstance(meta_pk, str):
        state = unit.find_pk(meta_pk) if unit.tx.load_customer(meta_pk) else None
        if state is not None:
            return state
    latest = data.get("latest_invoice")
    if isinstance(latest, str):
        inv = unit.tx.find_invoice_by_gateway_id(latest)
        if inv is not None:
            return unit.find_pk(inv.customer_pk)
    if gid is None:
        return None
    # No index by provider id in the Store port: scan (an index is asked for in the report).
    after: str | None = None
    while True:
        page = unit.tx.list_customers(limit=500, starting_after=after, email=None)
        for c in page:
            if c.gateway_customer_id == gid:
                return unit.find_pk(c.pk)
        if len(page) < 500:
            return None
        after = page[-1].pk


def _subscription_updated(unit: Unit, event: GatewayEvent, data: Mapping[str, Any]) -> None:
    """W5: provider-side changes (a cancel from the billing portal, status changes)."""
    state = _customer_of(unit, event, data)
    if state is None:
        return
    status = data.get("status")
    if status in ENDED:
        unit.put(_end_cycle(unit, state, data))
        return
    for cp in billed_through(state, data):
        current = state.product_instance(cp.instance_id)
        if current is None or not current.is_live:
            continue
        if data.get("cancel_at_period_end") is True and current.canceled_at is None:
            state, current = cancel_instance(unit, state, current, immediately=False)
        if status in PAST_DUE and current.status == "active":
            state = replace_product(state, attrs.evolve(current, status="past_due"))
        elif status in ("active", "trialing") and current.status == "past_due":
            state = replace_product(state, attrs.evolve(current, status="active"))
    unit.put(state)


def _item_products(data: Mapping[str, Any]) -> set[str]:
    """The product ids a provider subscription object names on its items (Stripe's shape:
    ``items.data[].metadata.autumn_product_id``, which both gateways set)."""
    items = data.get("items")
    rows = items.get("data") if isinstance(items, Mapping) else None
    out: set[str] = set()
    for item in rows if isinstance(rows, list) else []:
        meta = item.get("metadata") if isinstance(item, Mapping) else None
        pid = meta.get("autumn_product_id") if isinstance(meta, Mapping) else None
        if isinstance(pid, str) and pid:
            out.add(pid)
    return out


def billed_through(state: CustomerState, data: Mapping[str, Any]) -> list[ProductState]:
    """W5/W6: the live recurring products a provider subscription bills.

    A product that recorded its subscription (``gateway_refs["subscription_id"]``, from the
    charge outcomes) belongs to it iff the ids match; a product without one belongs to it when
    the subscription's items name its product id. When neither the products nor the event say
    anything (a gateway that reports no subscription ids and no item metadata), every live
    recurring product is taken, as a customer with one subscription has.
    """
    live = [p for p in state.products if billing.is_recurring_live(p)]
    sub_id = data.get("id")
    named = _item_products(data)
    recorded = any(billing.SUBSCRIPTION_REF in p.gateway_refs for p in live)
    if not named and not (recorded and isinstance(sub_id, str)):
        return live
    out: list[ProductState] = []
    for p in live:
        ref = p.gateway_refs.get(billing.SUBSCRIPTION_REF)
        if (ref == sub_id) if ref is not None else (p.product_id in named):
            out.append(p)
    return out


def _end_cycle(unit: Unit, state: CustomerState, data: Mapping[str, Any]) -> CustomerState:
    """W6: every live product billed through the subscription expires; successors start; the
    paid scheduled products of those groups are deleted; final arrears are billed once."""
    now = unit.now
    for cp in billed_through(state, data):
        current = state.product_instance(cp.instance_id)
        if current is None or not billing.is_recurring_live(current):
            continue
        product = billing.product_of(unit.ctx, current)
        if current.current_period_start is not None and unit.tx.claim_renewal(
            current.instance_id, current.current_period_start
        ):
            lines = billing.arrears_lines(
                unit.ctx,
                product,
                current,
                [r for r in state.rows if r.cp_id == current.instance_id],
                start=current.current_period_start,
                end=now,
            )
            if lines:
                sent = billing.charge(
                    unit,
                    state,
                    lines,
                    cp_id=current.instance_id,
                    key=f"final:{current.instance_id}",
                    reason="cancel",
                )
                unit.invoices.append(sent.invoice)
        paid_scheduled = {
            p.instance_id
            for p in state.products
            if p.status == "scheduled"
            and p.group == current.group
            and p.entity_id == current.entity_id
            and not p.free
        }
        state = drop_products(state, paid_scheduled)
        state = expire(state, current, now)
        state = activate_successor(unit, state, current, now)
    return state
