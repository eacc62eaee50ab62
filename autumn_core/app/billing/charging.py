"""Sending invoice lines to the gateway: the provider customer (C7), the charge and what it
learnt (subscription refs, W6). Under an operation ``Driver`` a charge is deferred (see
``billing.saga``); with ``gateway=None`` or in a preview the invoice is only recorded (CO1, A7).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime

import attrs

from autumn_core.app.billing.credits import to_collect, with_credit
from autumn_core.app.billing.lines import is_recurring_live, line, new_invoice, product_of, total
from autumn_core.app.billing.saga import ChargeDeferred, driven, pending_key
from autumn_core.app.context import Context, new_id
from autumn_core.app.unit import Unit
from autumn_core.errors import GatewayError
from autumn_core.model import CustomerState, InvoiceLineRecord, InvoiceRecord
from autumn_core.ports import ChargeLine, ChargeOutcome, ChargeRequest, RecurringPrice
from autumn_core.serialization import converter

#: Set while previewing: nothing may reach the gateway (A7), lazy work included.
_DRY_RUN: ContextVar[bool] = ContextVar("autumn_dry_run", default=False)


@contextmanager
def dry_run() -> Iterator[None]:
    token = _DRY_RUN.set(True)
    try:
        yield
    finally:
        _DRY_RUN.reset(token)


def is_dry_run() -> bool:
    return _DRY_RUN.get()


def ensure_gateway_customer(unit: Unit, state: CustomerState) -> tuple[CustomerState, str]:
    """C7: the provider-side customer is created by the first operation that needs it."""
    if state.gateway_customer_id is not None:
        return state, state.gateway_customer_id
    gateway = unit.ctx.gateway
    assert gateway is not None
    gid = gateway.create_customer(
        customer_id=state.id,
        email=state.email,
        name=state.name,
        # Deterministic across processes: a customer created again after a crash (a new pk)
        # keeps its id, so the provider replays the first creation.
        idempotency_key=customer_key(state),
    )
    state = unit.put(attrs.evolve(state, gateway_customer_id=gid))
    return state, gid


def customer_key(state: CustomerState) -> str:
    """The provider customer's idempotency key: from the library id, else the stable pk."""
    if state.id is not None:
        return "autumn-customer:id:" + hashlib.sha256(state.id.encode()).hexdigest()[:40]
    return f"autumn-customer:{state.pk}"


def has_payment_method(unit: Unit, gid: str) -> bool:
    """The gateway's answer, asked once per driven operation (its runs would repeat it)."""
    gateway = unit.ctx.gateway
    assert gateway is not None
    drv = driven()
    if drv is None:
        return gateway.has_payment_method(gid)
    memo_key = "has_payment_method:" + gid
    if memo_key not in drv.memo:
        drv.memo[memo_key] = gateway.has_payment_method(gid)
    return bool(drv.memo[memo_key])


@attrs.frozen
class Sent:
    invoice: InvoiceRecord
    #: "paid", "failed", "requires_action" (see ``ChargeOutcome``) or "local" (no gateway).
    outcome: str
    checkout_url: str | None = None
    state: CustomerState | None = None


def charge(
    unit: Unit,
    state: CustomerState,
    lines: Sequence[InvoiceLineRecord],
    *,
    cp_id: str | None,
    key: str,
    recurring: tuple[RecurringPrice, ...] | None = None,
    description: str = "",
    period_end: datetime | None = None,
    reason: str = "attach",
    at: datetime | None = None,
) -> Sent:
    """Send ``lines`` to the gateway; the caller decides what each outcome means.

    ``key`` names this charge deterministically within its operation (``attach:<op id>``,
    ``renewal:<cp>:<period>``, ...). Under a driver that owns the key the charge is deferred
    (see the module docstring); otherwise it is sent now. Either way a pending operation
    record left by an interrupted earlier attempt supplies the request, so the gateway sees
    the same idempotency key again. The returned invoice is not saved: the caller saves it.
    """
    invoice_id = new_id("inv")
    gateway = unit.ctx.gateway
    lines = with_credit(unit, state, lines)
    collect = to_collect(lines)
    if gateway is None or is_dry_run() or (not collect and recurring is None):
        # No provider, or nothing for it to do (a credit kept by the engine, P12).
        inv = new_invoice(
            unit, state, lines, status="paid", cp_id=cp_id, invoice_id=invoice_id, at=at
        )
        return Sent(inv, "local", state=state)
    drv = driven()
    pkey = pending_key(key)
    if drv is not None and key in drv.resolved:
        done = drv.resolved[key]
        drv.consumed.add(key)
        return _sent(unit, state, lines, cp_id, done.request, done.outcome, at)
    state, gid = ensure_gateway_customer(unit, state)
    existing = unit.tx.get_pending(pkey)
    if existing is not None:
        request = converter.structure(existing.payload["request"], ChargeRequest)
    else:
        request = ChargeRequest(
            gateway_customer_id=gid,
            invoice_id=invoice_id,
            lines=tuple(
                ChargeLine(ln.description, ln.amount, ln.product_id, ln.feature_id, ln.quantity)
                for ln in collect
            ),
            total=total(collect),
            currency=unit.ctx.options.currency,
            idempotency_key=key,
            description=description,
            recurring=recurring,
            metadata=_metadata(state, period_end),
            reason=reason,
            period_end=period_end,
        )
    if drv is not None and drv.owns(key):
        if existing is None:
            # A fresh attempt: the gateway key gets a salt persisted with the record, so a
            # retry after a definite failure (the record deleted) is a new charge (I3).
            request = attrs.evolve(request, idempotency_key=f"{key}:{new_id('a')}")
        raise ChargeDeferred(
            key=key,
            pending_key=pkey,
            request=request,
            lines=tuple(lines),
            customer_pk=state.pk,
            customer_id=state.id,
            gateway_customer_id=gid,
            resumed=existing is not None,
        )
    memo_key = "charge:" + request.idempotency_key
    if drv is not None and memo_key in drv.memo:
        outcome = drv.memo[memo_key]  # the same inline charge in an earlier run of this call
    else:
        outcome = gateway.charge(request)
        if drv is not None:
            drv.memo[memo_key] = outcome
    if existing is not None:
        unit.tx.delete_pending(pkey)
    return _sent(unit, state, lines, cp_id, request, outcome, at)


def _metadata(state: CustomerState, period_end: datetime | None) -> dict[str, str]:
    metadata = {"autumn_customer_pk": state.pk}
    if period_end is not None:
        metadata["period_end"] = str(int(period_end.timestamp()))
    return metadata


def _sent(
    unit: Unit,
    state: CustomerState,
    lines: Sequence[InvoiceLineRecord],
    cp_id: str | None,
    request: ChargeRequest,
    outcome: ChargeOutcome,
    at: datetime | None = None,
) -> Sent:
    if outcome.status not in ("paid", "failed", "requires_action"):
        raise GatewayError(f"gateway returned unknown charge status {outcome.status!r}")
    if total(to_collect(lines)) != request.total:
        # Planned again after the charge (a resumed or recovered operation) with another
        # result: the invoice shows what the provider was actually asked for.
        lines = [
            line(
                ln.description,
                ln.amount,
                product_id=ln.product_id,
                feature_id=ln.feature_id,
                quantity=ln.quantity,
            )
            for ln in request.lines
        ]
    status = "paid" if outcome.status == "paid" else "open"
    if outcome.subscriptions:
        state = record_subscriptions(unit.ctx, state, outcome.subscriptions)
    inv = new_invoice(
        unit,
        state,
        lines,
        status=status,
        cp_id=cp_id,
        gateway_invoice_id=outcome.gateway_invoice_id,
        invoice_id=request.invoice_id,
        at=at,
    )
    return Sent(inv, outcome.status, outcome.checkout_url, state=state)


# -- provider subscriptions (W6) ---------------------------------------------------------------
#: ``ProductState.gateway_refs`` key of the provider subscription that bills the product.
SUBSCRIPTION_REF = "subscription_id"


def record_subscriptions(
    ctx: Context, state: CustomerState, subscriptions: Mapping[str, str]
) -> CustomerState:
    """Keep, on each live recurring product, the subscription the gateway says bills it.

    A product the gateway does not name (one with only pay-per-use prices, which no
    subscription item carries) takes the subscription of a named product on its billing cycle.
    """
    by_cycle: dict[tuple[str, int] | None, str] = {}
    live = [p for p in state.products if is_recurring_live(p)]
    for p in live:
        sub = subscriptions.get(p.product_id)
        if sub is not None:
            by_cycle.setdefault(product_of(ctx, p).billing_interval(), sub)
    changed = False
    products = list(state.products)
    for i, p in enumerate(products):
        if not is_recurring_live(p):
            continue
        sub = subscriptions.get(p.product_id) or by_cycle.get(product_of(ctx, p).billing_interval())
        if sub is not None and p.gateway_refs.get(SUBSCRIPTION_REF) != sub:
            products[i] = attrs.evolve(p, gateway_refs={**p.gateway_refs, SUBSCRIPTION_REF: sub})
            changed = True
    return attrs.evolve(state, products=tuple(products)) if changed else state


def adopt(state: CustomerState, sent: Sent) -> CustomerState:
    """What a charge learnt about the customer (provider customer id, subscription refs),
    carried onto ``state`` (which may have moved on since the charge was planned)."""
    learnt = sent.state
    if learnt is None:
        return state
    if learnt.gateway_customer_id != state.gateway_customer_id:
        state = attrs.evolve(state, gateway_customer_id=learnt.gateway_customer_id)
    refs = {p.instance_id: p.gateway_refs for p in learnt.products if p.gateway_refs}
    if not refs:
        return state
    products = tuple(
        attrs.evolve(p, gateway_refs={**p.gateway_refs, **refs[p.instance_id]})
        if p.instance_id in refs and refs[p.instance_id].items() - p.gateway_refs.items()
        else p
        for p in state.products
    )
    return attrs.evolve(state, products=products)
