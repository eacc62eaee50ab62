"""Payment-provider events (W1-W6): each event id is applied at most once.

Events never move periods or reset rows (D7): the library owns periods. Each event is applied
in its own transaction together with the store's record of its id (``claim_gateway_event``),
so a repeat, whatever the order, changes nothing. The engine acts on the event's typed payload
(``autumn_core.provider_events``), which the gateway parsed from its provider's own format.
"""

from __future__ import annotations

import attrs

from autumn_core.app import attach as attach_uc
from autumn_core.app import billing
from autumn_core.app.cancel import cancel_instance
from autumn_core.app.invoice_events import emit_invoice
from autumn_core.app.provisioning import (
    activate_successor,
    drop_products,
    expire,
    replace_product,
)
from autumn_core.app.unit import Unit
from autumn_core.errors import InvalidRequest
from autumn_core.model import CustomerState, InvoiceRecord, ProductState
from autumn_core.provider_events import (
    CheckoutCompleted,
    PaymentFailed,
    PaymentSucceeded,
    SubscriptionDeleted,
    SubscriptionUpdated,
)
from autumn_core.results import GatewayEvent

Payment = PaymentSucceeded | PaymentFailed
Subscription = SubscriptionUpdated | SubscriptionDeleted


def validate(event: object) -> GatewayEvent:
    if not isinstance(event, GatewayEvent):
        raise InvalidRequest(f"handle_event takes a GatewayEvent, got {event!r}")
    if not isinstance(event.id, str) or not event.id:
        raise InvalidRequest(f"a gateway event needs an id, got {event.id!r}")
    return event


def handle_event(unit: Unit, event: GatewayEvent) -> None:
    if not unit.tx.claim_gateway_event(event.id):
        return  # W1: applied before
    p = event.payload
    if isinstance(p, CheckoutCompleted):
        _run_pending(unit, p.pending_key, p.gateway_invoice_id, p.subscription_id)
    elif isinstance(p, PaymentSucceeded):
        if not _run_pending(unit, p.pending_key, p.gateway_invoice_id, None, p.invoice_id):
            _paid(unit, p)
    elif isinstance(p, PaymentFailed):
        _failed(unit, p)
    elif isinstance(p, SubscriptionUpdated):
        _subscription_updated(unit, event, p)
    elif isinstance(p, SubscriptionDeleted):
        state = _customer_of(unit, event, p)
        if state is not None:
            unit.put(_end_cycle(unit, state, p))
    # Anything else is recorded (so it is not re-examined) and ignored.


def _run_pending(
    unit: Unit,
    key: str | None,
    gateway_invoice_id: str | None,
    subscription_id: str | None,
    invoice_id: str | None = None,
) -> bool:
    """W2/W3/CO5: the stored checkout plan runs exactly once, without charging again.

    ``subscription_id``: the provider subscription the checkout started (None for a one-off
    payment). The products it provisions are billed through it, as a charge outcome's
    ``subscriptions`` would say (W6).
    """
    if key is None:
        return False
    pending = unit.tx.get_pending(key)
    if pending is None or pending.kind != attach_uc.CHECKOUT:
        # A checkout's payment event after its checkout.completed: nothing left to do (an
        # event naming an engine invoice is that invoice's payment instead).
        return pending is None and invoice_id is None
    done = attach_uc.complete_pending(unit, pending, gateway_invoice_id)
    if done and subscription_id:
        state = unit.find_pk(pending.customer_pk)
        product_id = pending.payload["product_id"]
        unit.put(billing.record_subscriptions(unit.ctx, state, {product_id: subscription_id}))
    return True


def _invoice(unit: Unit, p: Payment) -> InvoiceRecord | None:
    if p.invoice_id:
        found = unit.tx.get_invoice(p.invoice_id)
        if found is not None:
            return found
    if p.gateway_invoice_id:
        return unit.tx.find_invoice_by_gateway_id(p.gateway_invoice_id)
    return None


def _paid(unit: Unit, p: PaymentSucceeded) -> None:
    """W3: the invoice is paid; the past-due product it billed is active again."""
    inv = _invoice(unit, p)
    if inv is None:
        return
    state = unit.find_pk(inv.customer_pk)
    if inv.status != "paid":
        inv = attrs.evolve(inv, status="paid")
        unit.tx.save_invoice(inv)
        emit_invoice(unit, state.id, inv, paid=True, reason="provider")  # EO6
    cp = state.product_instance(inv.cp_id) if inv.cp_id else None
    if cp is not None and cp.status == "past_due":
        unit.put(replace_product(state, attrs.evolve(cp, status="active")))


def _failed(unit: Unit, p: PaymentFailed) -> None:
    """W4: a failed first charge never provisions; a renewal's product becomes past due."""
    if p.pending_key is not None:
        pending = unit.tx.get_pending(p.pending_key)
        if pending is not None:
            attach_uc.fail_pending(unit, pending)
            return
    inv = _invoice(unit, p)
    if inv is None:
        return
    state = unit.find_pk(inv.customer_pk)
    if inv.status == "paid":
        unit.tx.save_invoice(attrs.evolve(inv, status="open"))
    emit_invoice(unit, state.id, attrs.evolve(inv, status="open"), paid=False, reason="provider")
    cp = state.product_instance(inv.cp_id) if inv.cp_id else None
    if cp is not None and cp.status == "active":
        unit.put(replace_product(state, attrs.evolve(cp, status="past_due")))


def _customer_of(unit: Unit, event: GatewayEvent, p: Subscription) -> CustomerState | None:
    """The customer a subscription event is about: by the pk the provider echoes, by its
    latest invoice, else by its provider customer id."""
    if p.customer_pk is not None and unit.tx.load_customer(p.customer_pk) is not None:
        return unit.find_pk(p.customer_pk)
    if p.latest_gateway_invoice_id is not None:
        inv = unit.tx.find_invoice_by_gateway_id(p.latest_gateway_invoice_id)
        if inv is not None:
            return unit.find_pk(inv.customer_pk)
    gid = event.gateway_customer_id
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


def _subscription_updated(unit: Unit, event: GatewayEvent, p: SubscriptionUpdated) -> None:
    """W5: provider-side changes (a cancel from the billing portal, status changes)."""
    state = _customer_of(unit, event, p)
    if state is None:
        return
    if p.status == "ended":
        unit.put(_end_cycle(unit, state, p))
        return
    for cp in billed_through(state, p):
        current = state.product_instance(cp.instance_id)
        if current is None or not current.is_live:
            continue
        if p.cancel_at_period_end and current.canceled_at is None:
            state, current = cancel_instance(unit, state, current, immediately=False)
        if p.status == "past_due" and current.status == "active":
            state = replace_product(state, attrs.evolve(current, status="past_due"))
        elif p.status == "active" and current.status == "past_due":
            state = replace_product(state, attrs.evolve(current, status="active"))
    unit.put(state)


def billed_through(state: CustomerState, p: Subscription) -> list[ProductState]:
    """W5/W6: the live recurring products a provider subscription bills.

    A product that recorded its subscription (``gateway_refs["subscription_id"]``, from the
    charge outcomes) belongs to it iff the ids match; a product without one belongs to it when
    the subscription's items name its product id. When neither the products nor the event say
    anything (a gateway that reports no subscription ids and no item products), every live
    recurring product is taken, as a customer with one subscription has.
    """
    live = [cp for cp in state.products if billing.is_recurring_live(cp)]
    sub_id = p.subscription_id
    recorded = any(billing.SUBSCRIPTION_REF in cp.gateway_refs for cp in live)
    if not p.product_ids and not (recorded and sub_id):
        return live
    out: list[ProductState] = []
    for cp in live:
        ref = cp.gateway_refs.get(billing.SUBSCRIPTION_REF)
        if (ref == sub_id) if ref is not None else (cp.product_id in p.product_ids):
            out.append(cp)
    return out


def _end_cycle(unit: Unit, state: CustomerState, p: Subscription) -> CustomerState:
    """W6: every live product billed through the subscription expires; successors start; the
    paid scheduled products of those groups are deleted; final arrears are billed once."""
    now = unit.now
    for cp in billed_through(state, p):
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
