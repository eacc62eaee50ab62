"""The lines an invoice holds: what a product bills in advance, in arrears, at a renewal
(P5-P11, S7), the prices a gateway mirrors as a subscription, and the invoice records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from autumn_core.app.context import Context, new_id
from autumn_core.app.unit import Unit
from autumn_core.catalog import Item, Product
from autumn_core.model import (
    ZERO,
    CustomerState,
    InvoiceLineRecord,
    InvoiceRecord,
    ProductState,
    RowState,
)
from autumn_core.ports import RecurringPrice
from autumn_core.results import Invoice, InvoiceLine
from autumn_core.rules.pricing import money, packs_amount, prorate, seats_amount, usage_amount
from autumn_core.rules.rows import prepaid_packs


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
