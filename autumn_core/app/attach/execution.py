"""Carrying out an attach: insert the trial claim (T5), then pay for the plan with no gateway
(recorded as paid), a charge (charge, then commit), an open invoice on an existing cycle, or a
checkout that provisions nothing until the gateway reports payment (CO1-CO5).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from autumn_core.app import billing
from autumn_core.app.attach.args import AttachArgs, charge_prefixes
from autumn_core.app.attach.planning import Plan, paid_cycle, plan_attach, ref_state
from autumn_core.app.context import new_id
from autumn_core.app.trials import claim as insert_claim
from autumn_core.app.unit import Unit
from autumn_core.app.views import product_view
from autumn_core.errors import PaymentFailed
from autumn_core.model import CustomerState, PendingRecord
from autumn_core.ports import ChargeLine, CheckoutRequest
from autumn_core.results import UNSET, AttachResult
from autumn_core.serialization import converter

CHECKOUT = "checkout"


def claim_or_replan(unit: Unit, state: CustomerState, a: AttachArgs, plan: Plan) -> Plan:
    """T5: insert the trial claim; a conflict means the trial is used: attach without one."""
    if plan.trial_claim is None:
        return plan
    if insert_claim(unit, state.pk, plan.trial_claim) or plan.trial_claim.explicit:
        return plan
    return plan_attach(unit, state, a, allow_trial=False)


def _result(
    unit: Unit, plan: Plan, invoice: Any = None, checkout_url: str | None = None
) -> AttachResult:
    provisioned = checkout_url is None
    return AttachResult(
        scenario=plan.scenario,
        product=product_view(unit.ctx, plan.cp, unit.now) if plan.cp and provisioned else None,
        checkout_url=checkout_url,
        invoice=invoice,
        trial_ends_at=plan.trial_ends_at,
    )


def attach(unit: Unit, a: AttachArgs) -> AttachResult:
    fingerprint = a.fingerprint() if a.idempotency_key is not None else ""
    if a.idempotency_key is not None:
        pk = unit.pk_of(a.customer)
        if pk is not None:
            stored = unit.replay("attach", pk, a.idempotency_key, fingerprint)
            if stored is not None:
                return attrs.evolve(converter.structure(stored, AttachResult), replayed=True)
    state = ref_state(unit, a)
    result = _attach_on_state(unit, state, a)
    unit.remember("attach", state.pk, a.idempotency_key, fingerprint, converter.unstructure(result))
    return result


def _attach_on_state(unit: Unit, state: CustomerState, a: AttachArgs) -> AttachResult:
    ctx = unit.ctx
    plan = plan_attach(unit, state, a)
    gateway = ctx.gateway
    # CO4/T7: a checkout is needed when the product needs a payment method and none is on
    # file, unless it joins an existing paid cycle (then its invoice is left open).
    drv = billing.driven()
    already_charged = drv is not None and any(k in drv.resolved for k in charge_prefixes(a))
    if (
        gateway is not None
        and plan.needs_payment
        and plan.scenario != "downgrade"
        and not already_charged
    ):
        state, gid = billing.ensure_gateway_customer(unit, state)
        plan = attrs.evolve(plan, state=attrs.evolve(plan.state, gateway_customer_id=gid))
        if a.force_checkout or (not plan.merged and not billing.has_payment_method(unit, gid)):
            return _checkout(unit, state, a, plan, gid)
    plan = claim_or_replan(unit, state, a, plan)
    return provision(unit, a, plan, state)


def provision(
    unit: Unit,
    a: AttachArgs,
    plan: Plan,
    base: CustomerState,
    *,
    paid_invoice_id: str | None = None,
) -> AttachResult:
    """Charge (unless a checkout already paid), then keep the new state (charge, then commit)."""
    ctx = unit.ctx
    new_state = plan.state
    invoice = None
    if plan.lines or (
        plan.needs_payment and plan.trial_ends_at is None and not plan.product.is_free
    ):
        key = f"attach:{a.nonce}"
        recurring = billing.recurring_prices(ctx, new_state) if ctx.gateway is not None else None
        if paid_invoice_id is not None:
            inv = billing.new_invoice(
                unit,
                new_state,
                plan.lines,
                status="paid",
                cp_id=plan.cp.instance_id if plan.cp else None,
                gateway_invoice_id=paid_invoice_id,
            )
            sent = billing.Sent(inv, "paid", state=new_state)
        else:
            sent = billing.charge(
                unit,
                new_state,
                plan.lines,
                cp_id=plan.cp.instance_id if plan.cp else None,
                key=key,
                recurring=recurring,
                description=f"{plan.scenario} {plan.product.id}",
                period_end=plan.cp.current_period_end if plan.cp else None,
                reason=_reason(plan, base, unit.now),
            )
        if sent.outcome == "failed":
            # CO3: nothing is provisioned; raising rolls the whole attach back.
            raise PaymentFailed(
                f"payment for product {plan.product.id!r} failed for customer {new_state.id!r}"
            )
        if sent.outcome == "requires_action" and not plan.merged:
            base = attrs.evolve(base, gateway_customer_id=new_state.gateway_customer_id)
            gid = new_state.gateway_customer_id or ""
            return _checkout(unit, base, a, plan, gid, sent.checkout_url)
        new_state = billing.adopt(new_state, sent)
        unit.invoices.append(sent.invoice)
        invoice = billing.invoice_view(new_state, sent.invoice)
    elif plan.trial_ends_at is not None and plan.needs_payment and ctx.gateway is not None:
        # A card-required trial: $0 now; the gateway may open a trialing subscription (T7).
        trial_sent = billing.charge(
            unit,
            new_state,
            (),
            cp_id=plan.cp.instance_id if plan.cp else None,
            key=f"trial:{a.nonce}",
            recurring=billing.recurring_prices(ctx, new_state),
            period_end=plan.trial_ends_at,
            reason="attach",
        )
        new_state = billing.adopt(new_state, trial_sent)
    unit.put(new_state)
    return _result(unit, plan, invoice)


_REASONS = {"upgrade": "switch", "downgrade": "switch", "update_quantity": "quantity"}


def _reason(plan: Plan, base: CustomerState, now: datetime) -> str:
    """``ChargeRequest.reason``: leaving a free product is the first paid charge, an attach."""
    reason = _REASONS.get(plan.scenario, "attach")
    if reason == "switch" and paid_cycle(base, now) is None:
        return "attach"
    return reason


def _checkout(
    unit: Unit,
    state: CustomerState,
    a: AttachArgs,
    plan: Plan,
    gid: str,
    url: str | None = None,
) -> AttachResult:
    """CO4/CO5: store the plan's arguments; the gateway's payment event carries it out once."""
    gateway = unit.ctx.gateway
    assert gateway is not None
    key = new_id("pend")
    payload = {
        "product_id": a.product.id,
        "entity_id": a.entity_id,
        "quantities": None
        if a.quantities is None
        else {k: str(v) for k, v in a.quantities.items()},
        "free_trial": "unset"
        if a.free_trial is UNSET
        else (None if a.free_trial is None else converter.unstructure(a.free_trial)),
        "idempotency_key": a.idempotency_key,
    }
    unit.tx.put_pending(PendingRecord(key, state.pk, CHECKOUT, payload, unit.now))
    if url is None:
        url = gateway.create_checkout(
            CheckoutRequest(
                gateway_customer_id=gid,
                pending_key=key,
                lines=tuple(
                    ChargeLine(ln.description, ln.amount, ln.product_id, ln.feature_id, ln.quantity)
                    for ln in plan.lines
                ),
                total=plan.due,
                currency=unit.ctx.options.currency,
                success_url=a.success_url,
                idempotency_key=f"checkout:{key}",
                recurring=(
                    billing.recurring_prices(unit.ctx, plan.state) or None
                    if plan.product.is_recurring_paid
                    else None
                ),
            )
        )
    unit.put(state)
    return _result(unit, plan, None, checkout_url=url)
