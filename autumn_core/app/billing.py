"""Invoices and charging: the lines a product owes, and sending them to the gateway.

"Charge, then commit", with a durable record in between. A use case run under an operation
``Driver`` (attach, cancel: see ``drive``) does not call the gateway for its own charge inside its
transaction: ``charge`` raises ``ChargeDeferred`` with the planned request, the transaction rolls
back, a short transaction commits a pending operation record (kind ``"operation"``) holding that
request, the gateway is called with the record's key, and the use case runs again with the
outcome, committing the local effect and deleting the record in one transaction. A process
killed anywhere in between leaves either nothing or the record, which ``Autumn.recover()``
completes or rolls back with the same gateway key, so the provider never charges twice.

Charges made by work that runs outside a driver (renewals and seat changes reached from
check/track lazy work) are sent inside their transaction with a key that is deterministic for
that attempt (the renewal period, the customer's version), so a re-run is replayed by the
gateway. With ``gateway=None`` invoices are only recorded locally, as paid (CO1).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import attrs

from autumn_core.app.context import Context, new_id
from autumn_core.app.invoice_events import emit_invoice
from autumn_core.app.unit import Unit
from autumn_core.catalog import Item, Product
from autumn_core.errors import GatewayError
from autumn_core.model import (
    ZERO,
    CustomerState,
    InvoiceLineRecord,
    InvoiceRecord,
    PendingRecord,
    ProductState,
    RowState,
)
from autumn_core.ports import (
    ChargeLine,
    ChargeLookup,
    ChargeOutcome,
    ChargeRequest,
    RecurringPrice,
)
from autumn_core.results import Invoice, InvoiceLine
from autumn_core.rules.pricing import (
    money,
    packs_amount,
    prorate,
    seats_amount,
    usage_amount,
)
from autumn_core.rules.rows import prepaid_packs
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


def product_of(ctx: Context, cp: ProductState) -> Product:
    product = ctx.registry.product(cp.product_id, cp.version)
    if product is None:  # pragma: no cover - versions are never deleted
        raise LookupError(f"product {cp.product_id!r} v{cp.version} is not in the registry")
    return product


def line(
    description: str,
    amount: Decimal,
    *,
    product_id: str | None,
    feature_id: str | None = None,
    quantity: Decimal = Decimal(1),
    start: datetime | None = None,
    end: datetime | None = None,
) -> InvoiceLineRecord:
    """One invoice line, rounded half-up to the cent (P11)."""
    return InvoiceLineRecord(
        description=description,
        amount=money(amount),
        product_id=product_id,
        feature_id=feature_id,
        quantity=quantity,
        period_start=start,
        period_end=end,
    )


def total(lines: Iterable[InvoiceLineRecord]) -> Decimal:
    """P11: the total is the sum of the (already rounded) lines."""
    return sum((ln.amount for ln in lines), ZERO)


# -- credits (P12) ----------------------------------------------------------------------------
#: The description of the line that spends the customer's credit on an invoice (P12).
CREDIT_LINE = "Applied credit balance"


def is_credit_line(ln: InvoiceLineRecord) -> bool:
    return ln.product_id is None and ln.feature_id is None and ln.description == CREDIT_LINE


def credit_balance(invoices: Iterable[InvoiceRecord]) -> Decimal:
    """P12, derived from the invoices alone (no counter is kept): what the negative invoices
    credited, less what credit lines have spent since. Void invoices count for nothing, so a
    voided charge gives back the credit it had taken."""
    balance = ZERO
    for inv in invoices:
        if inv.status == "void":
            continue
        if inv.total < 0:
            balance -= inv.total
        balance += sum((ln.amount for ln in inv.lines if is_credit_line(ln)), ZERO)
    return max(ZERO, balance)


def customer_credit(unit: Unit, state: CustomerState) -> Decimal:
    """The customer's credit now: stored invoices plus those this unit has not saved yet."""
    seen: dict[str, InvoiceRecord] = {i.id: i for i in unit.tx.list_invoices(state.pk)}
    for inv in unit.invoices:
        if inv.customer_pk == state.pk:
            seen[inv.id] = inv
    return credit_balance(seen.values())


def with_credit(
    unit: Unit, state: CustomerState, lines: Sequence[InvoiceLineRecord]
) -> list[InvoiceLineRecord]:
    """P12: a positive invoice spends the customer's credit, up to its total, as one line."""
    out = list(lines)
    gross = total(out)
    if gross <= 0 or any(is_credit_line(ln) for ln in out):
        return out
    available = customer_credit(unit, state)
    if available <= 0:
        return out
    return [*out, line(CREDIT_LINE, -min(available, gross), product_id=None)]


def to_collect(lines: Sequence[InvoiceLineRecord]) -> tuple[InvoiceLineRecord, ...]:
    """What the gateway is asked to collect: the (net) lines, or nothing for a credit.

    The engine keeps the credit (P12) and spends it on the next invoices itself, so a negative
    total is never sent as money: the provider would otherwise hold the same credit twice.
    """
    return tuple(lines) if total(lines) >= 0 else ()


def _name(product: Product) -> str:
    return product.name or product.id


def _item_rows(rows: Iterable[RowState], cp: ProductState, index: int) -> list[RowState]:
    return [r for r in rows if r.cp_id == cp.instance_id and r.item_index == index]


def seats_in_use(rows: Sequence[RowState]) -> Decimal:
    """P7: seats above included, summed over the item's rows."""
    return sum((max(ZERO, r.usage - r.included) for r in rows), ZERO)


def cycle_lines(
    ctx: Context,
    product: Product,
    cp: ProductState,
    rows: Iterable[RowState],
    *,
    now: datetime,
    include_one_off: bool,
    prorated: bool = False,
    sign: int = 1,
) -> list[InvoiceLineRecord]:
    """``advance_lines`` over the product's own current period (most callers bill exactly that)."""
    return advance_lines(
        ctx,
        product,
        cp,
        rows,
        now=now,
        start=cp.current_period_start,
        end=cp.current_period_end,
        include_one_off=include_one_off,
        prorated=prorated,
        sign=sign,
    )


def advance_lines(
    ctx: Context,
    product: Product,
    cp: ProductState,
    rows: Iterable[RowState],
    *,
    now: datetime,
    start: datetime | None,
    end: datetime | None,
    include_one_off: bool,
    include_recurring: bool = True,
    prorated: bool = False,
    sign: int = 1,
    quantities: dict[str, Decimal] | None = None,
    seats: dict[int, Decimal] | None = None,
) -> list[InvoiceLineRecord]:
    """What a product bills in advance: base price, prepaid packs, paid seats (P6, P7, P10, T8).

    ``prorated`` bills only the unused fraction of [start, end) at ``now`` (P9); ``sign=-1``
    makes the credit lines of an upgrade or immediate cancel.
    """
    out: list[InvoiceLineRecord] = []
    rows = list(rows)
    qty = dict(cp.quantities) if quantities is None else quantities

    def add(desc: str, amount: Decimal, one_off: bool, **kw: object) -> None:
        if one_off and not include_one_off:
            return
        if not one_off and not include_recurring:
            return
        if prorated and not one_off:
            amount = prorate(amount, start, end, now)
        if sign < 0:
            desc = f"Unused time on {desc}"
        out.append(
            line(
                desc,
                amount * sign,
                product_id=product.id,
                start=None if one_off else (now if prorated else start),
                end=None if one_off else end,
                **kw,  # type: ignore[arg-type]
            )
        )

    if product.price is not None and product.price.amount != 0:
        add(_name(product), product.price.amount, product.price.interval == "one_off")
    feature_types = ctx.registry.feature_types
    for index, item in enumerate(product.items):
        if not item.is_priced:
            continue
        one_off = item.interval == "one_off"
        if item.is_prepaid:
            packs = prepaid_packs(item, qty.get(item.feature_id))
            if packs == 0:
                continue
            units = Decimal(packs) * item.billing_units
            add(
                f"{_name(product)}: {units} {item.feature_id}",
                packs_amount(item, packs),
                one_off,
                feature_id=item.feature_id,
                quantity=units,
            )
        elif feature_types.get(item.feature_id) == "allocated":
            count = (
                seats.get(index, ZERO)
                if seats is not None
                else seats_in_use(_item_rows(rows, cp, index))
            )
            if count == 0:
                continue  # no paid seat: nothing to bill, and no $0 line on the invoice
            add(
                f"{_name(product)}: {count} paid {item.feature_id}",
                seats_amount(item, count),
                one_off,
                feature_id=item.feature_id,
                quantity=count,
            )
    return out


def arrears_lines(
    ctx: Context,
    product: Product,
    cp: ProductState,
    rows: Iterable[RowState],
    *,
    start: datetime | None,
    end: datetime | None,
) -> list[InvoiceLineRecord]:
    """S7(2), P5: each usage-billed metered item's overage of the ending period.

    Per-entity rows of one item are summed before pricing, so billing units round once.
    """
    out: list[InvoiceLineRecord] = []
    rows = list(rows)
    for index, item in enumerate(product.items):
        if not item.is_usage or ctx.registry.feature_types.get(item.feature_id) == "allocated":
            continue
        overage = sum((max(ZERO, -r.balance) for r in _item_rows(rows, cp, index)), ZERO)
        if overage <= 0:
            continue
        out.append(
            line(
                f"{_name(product)}: {overage} {item.feature_id} overage",
                usage_amount(item, overage),
                product_id=product.id,
                feature_id=item.feature_id,
                quantity=overage,
                start=start,
                end=end,
            )
        )
    return out


def adjustment_lines(
    cp: ProductState, start: datetime | None, end: datetime | None
) -> list[InvoiceLineRecord]:
    """Prorations deferred to this renewal by the ``*_next_cycle`` behaviours (Q5, P7)."""
    return [
        line(desc, amount, product_id=cp.product_id, feature_id=fid or None, start=start, end=end)
        for desc, fid, amount in cp.next_cycle_adjustments
    ]


def is_recurring_live(cp: ProductState) -> bool:
    return cp.is_live and not cp.free and not cp.one_off


def recurring_prices(ctx: Context, state: CustomerState) -> tuple[RecurringPrice, ...]:
    """The customer's fixed recurring prices, for a gateway that mirrors them as a subscription."""
    out: list[RecurringPrice] = []
    for cp in state.products:
        if not is_recurring_live(cp):
            continue
        product = product_of(ctx, cp)
        if product.price is not None and product.price.interval != "one_off":
            out.append(
                RecurringPrice(
                    product.id,
                    None,
                    product.price.amount,
                    Decimal(1),
                    product.price.interval,
                    product.price.interval_count,
                )
            )
        for index, item in enumerate(product.items):
            if not item.is_priced or item.interval in (None, "one_off"):
                continue
            amount, quantity = _recurring_item(ctx, item, cp, state.rows, index)
            if amount is None:
                continue
            out.append(
                RecurringPrice(
                    product.id,
                    item.feature_id,
                    amount,
                    quantity,
                    item.interval or "month",
                    item.interval_count,
                )
            )
    return tuple(out)


def _recurring_item(
    ctx: Context, item: Item, cp: ProductState, rows: Sequence[RowState], index: int
) -> tuple[Decimal | None, Decimal]:
    if item.is_prepaid:
        packs = prepaid_packs(item, cp.quantities.get(item.feature_id))
        if item.price is not None:
            return item.price, Decimal(packs)
        return money(packs_amount(item, packs)), Decimal(1)
    if ctx.registry.feature_types.get(item.feature_id) == "allocated":
        seats = sum((r.paid_seats for r in _item_rows(rows, cp, index)), ZERO)
        if item.price is not None and item.billing_units == 1:
            return item.price, seats
        return money(seats_amount(item, seats)), Decimal(1)
    return None, ZERO


# -- gateway customers and sending invoices ---------------------------------------------------
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
    drv = _DRIVER.get()
    if drv is None:
        return gateway.has_payment_method(gid)
    memo_key = "has_payment_method:" + gid
    if memo_key not in drv.memo:
        drv.memo[memo_key] = gateway.has_payment_method(gid)
    return bool(drv.memo[memo_key])


def new_invoice(
    unit: Unit,
    state: CustomerState,
    lines: Sequence[InvoiceLineRecord],
    *,
    status: str,
    cp_id: str | None,
    gateway_invoice_id: str | None = None,
    invoice_id: str | None = None,
    at: datetime | None = None,
) -> InvoiceRecord:
    """``at``: the instant the invoice belongs to (a period boundary reached lazily later, S7/T7);
    the current time by default."""
    return InvoiceRecord(
        id=invoice_id or new_id("inv"),
        customer_pk=state.pk,
        status=status,
        total=total(lines),
        currency=unit.ctx.options.currency,
        lines=tuple(lines),
        created_at=unit.now if at is None else at,
        gateway_invoice_id=gateway_invoice_id,
        cp_id=cp_id,
    )


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
    drv = _DRIVER.get()
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
    if status == "open" and request.reason == "auto_topup":
        status = "void"  # TU5: a declined top-up is owed by nobody and grants nothing
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
    if outcome.status != "requires_action":  # EO6; a checkout reports its payment later
        emit_invoice(unit, state.id, inv, paid=outcome.status == "paid", reason=request.reason)
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


# -- operations: pending records, deferral and recovery ---------------------------------------
#: ``PendingRecord.kind`` of an in-flight gateway operation.
OPERATION = "operation"
#: How many charges one public call may defer in turn (normally one).
MAX_DEFERRALS = 4
#: How long (wall clock) a paid operation waits for another in-flight one on the same customer.
IN_FLIGHT_WAIT_S = 5.0
#: An operation record older than this (by the injected clock) belongs to a process that died:
#: ``recover()`` settles it, and new operations of the customer no longer wait for it.
STALE_AFTER = timedelta(minutes=10)

T = TypeVar("T")


def pending_key(key: str) -> str:
    """The pending record's key for a charge key (bounded: store keys are indexed)."""
    if len(key) <= 200:
        return "op:" + key
    return "op:h:" + hashlib.sha256(key.encode()).hexdigest()


@attrs.frozen
class Resolved:
    request: ChargeRequest
    outcome: ChargeOutcome


@attrs.define
class Driver:
    """One public call's operation: which charge keys it defers, what the gateway answered.

    ``payload`` describes how to run the operation again (``recover`` uses it), ``now`` pins
    the clock across the call's runs so a prorated amount is planned the same each time.
    """

    now: datetime
    prefixes: tuple[str, ...]
    payload: dict[str, Any]
    #: The customer to create when the first run created it (auto-create), as (ref, data).
    customer_ref: Any = None
    customer_data: Any = None
    resolved: dict[str, Resolved] = attrs.field(factory=dict)
    consumed: set[str] = attrs.field(factory=set)
    memo: dict[str, Any] = attrs.field(factory=dict)

    def owns(self, key: str) -> bool:
        return key.startswith(self.prefixes)


_DRIVER: ContextVar[Driver | None] = ContextVar("autumn_driver", default=None)


def driven() -> Driver | None:
    return _DRIVER.get()


class ChargeDeferred(Exception):
    """Raised by ``charge`` under a driver: roll back, record, charge, run again."""

    def __init__(
        self,
        *,
        key: str,
        pending_key: str,
        request: ChargeRequest,
        lines: tuple[InvoiceLineRecord, ...],
        customer_pk: str,
        customer_id: str | None,
        gateway_customer_id: str,
        resumed: bool,
    ) -> None:
        super().__init__(key)
        self.key = key
        self.pending_key = pending_key
        self.request = request
        self.lines = lines
        self.customer_pk = customer_pk
        self.customer_id = customer_id
        self.gateway_customer_id = gateway_customer_id
        self.resumed = resumed


class _InFlight(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _run(ctx: Context, drv: Driver, body: Callable[[Unit], T]) -> T:
    def run(tx: Any) -> T:
        unit = Unit(ctx, tx, write=True)
        unit.now = drv.now
        drv.consumed.clear()
        token = _DRIVER.set(drv)
        try:
            out = body(unit)
        finally:
            _DRIVER.reset(token)
        for key in drv.consumed:
            tx.delete_pending(pending_key(key))
        unit.flush()
        return out

    return ctx.run(run, write=True)


def _record(ctx: Context, drv: Driver, d: ChargeDeferred) -> ChargeRequest:
    """The short transaction before the gateway call: the pending record (and the customer
    with its provider id, so the next run makes no second provider customer)."""

    def run(tx: Any) -> ChargeRequest:
        unit = Unit(ctx, tx, write=True)
        unit.now = drv.now
        state: CustomerState | None = None
        if tx.load_customer(d.customer_pk) is not None:
            state = unit.find_pk(d.customer_pk)
        elif d.customer_id is not None:
            state = unit.get_or_create(d.customer_id, drv.customer_data)
        else:
            raise GatewayError(f"customer {d.customer_pk!r} vanished before its charge")
        # This operation's own earlier charges (a cancel of two paid instances) are not others.
        own = {d.pending_key, *(pending_key(k) for k in drv.resolved)}
        others = [
            r.key
            for r in tx.list_pending(OPERATION)
            if r.customer_pk == state.pk
            and r.key not in own
            and unit.now - r.created_at < STALE_AFTER
        ]
        if others:
            raise _InFlight(others[0])
        request = d.request
        if tx.get_pending(d.pending_key) is None:
            request = attrs.evolve(
                request, metadata={**request.metadata, "autumn_customer_pk": state.pk}
            )
            payload = {
                **drv.payload,
                "charge_key": d.key,
                "request": converter.unstructure(request),
                "lines": converter.unstructure(list(d.lines)),
            }
            tx.put_pending(PendingRecord(d.pending_key, state.pk, OPERATION, payload, unit.now))
        if state.gateway_customer_id is None:
            unit.put(attrs.evolve(state, gateway_customer_id=d.gateway_customer_id))
        unit.flush()
        return request

    return ctx.run(run, write=True)


def _drop(ctx: Context, key: str) -> None:
    ctx.run(lambda tx: tx.delete_pending(key), write=True)


def find_charge(ctx: Context, request: ChargeRequest) -> ChargeOutcome | None:
    """What became of a sent charge: asked without charging when the gateway can tell,
    otherwise re-driven with the same key (the gateway replays the first outcome)."""
    gateway = ctx.gateway
    assert gateway is not None
    if isinstance(gateway, ChargeLookup):
        return gateway.find_charge(request)
    return gateway.charge(request)


def drive(ctx: Context, drv: Driver, body: Callable[[Unit], T]) -> T:
    """Run ``body`` as one operation: deferred charges are recorded, sent, then committed."""
    gateway = ctx.gateway
    deadline = time.monotonic() + IN_FLIGHT_WAIT_S
    while True:
        try:
            return _run(ctx, drv, body)
        except ChargeDeferred as d:
            deferred = d
        except BaseException:
            _settle_failed(ctx, drv)
            raise
        assert gateway is not None
        try:
            request = _record(ctx, drv, deferred)
        except _InFlight as busy:
            if time.monotonic() > deadline:
                raise GatewayError(
                    f"payment operation {busy.key!r} for this customer is still pending; "
                    "retry later, or call recover() if its process died"
                ) from None
            time.sleep(0.02)
            continue
        try:
            outcome = gateway.charge(request)
        except GatewayError:
            # Maybe sent, maybe not: ask, so a charge that never arrived blocks nothing.
            # Only a provider that answers "never received" lets the record go; when it
            # cannot be asked, the record stays for recover().
            if isinstance(gateway, ChargeLookup):
                try:
                    never_arrived = gateway.find_charge(request) is None
                except GatewayError:
                    never_arrived = False
                if never_arrived:
                    _drop(ctx, deferred.pending_key)
            raise
        drv.resolved[deferred.key] = Resolved(request, outcome)
        if len(drv.resolved) > MAX_DEFERRALS:  # pragma: no cover - a use case bug
            raise GatewayError("an operation deferred too many charges")


def _settle_failed(ctx: Context, drv: Driver) -> None:
    """The run after a charge raised: a refused charge's record goes (nothing happened);
    a collected one stays for ``recover()`` (money moved, the local effect did not land)."""
    for key, done in drv.resolved.items():
        if done.outcome.status == "failed":
            _drop(ctx, pending_key(key))


def invoice_view(state: CustomerState, r: InvoiceRecord) -> Invoice:
    return Invoice(
        id=r.id,
        customer_id=state.id,
        status=r.status,
        total=r.total,
        currency=r.currency,
        lines=[
            InvoiceLine(
                ln.description,
                ln.product_id,
                ln.feature_id,
                ln.quantity,
                ln.amount,
                ln.period_start,
                ln.period_end,
            )
            for ln in r.lines
        ],
        created_at=r.created_at,
        gateway_invoice_id=r.gateway_invoice_id,
    )
