"""Product transitions due by ``now``: renewals, trial ends, scheduled switches, cancellations.

Called from lazy work (``app/lazy.py``) before free resets. Transitions are applied one at a
time in time order, so missed periods renew one by one (S7), each with its own invoice, and a
canceling product's end is applied before its successor starts (A4, X2, DF3).
Invoices of renewals are made exactly once per (product, period start) through the store's
renewal marker (``claim_renewal``), whatever write runs the lazy work.

A read never moves money: in a read unit or a preview (``settles`` is false) the same
transitions are applied to a state that is never saved, without claiming a marker, making an
invoice or calling the provider. Periods advance and rows reset exactly as the later write
will record them; that write also records the invoices, and a refused payment then makes the
product past due (W4), which the projection cannot know beforehand.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from autumn_core.app import billing
from autumn_core.app.context import new_id
from autumn_core.app.holds import follow_periods
from autumn_core.app.provisioning import (
    activate,
    activate_successor,
    drop_products,
    expire,
    period_end_from,
    replace_product,
    scheduled_in,
    with_period,
)
from autumn_core.app.unit import Unit
from autumn_core.catalog import Product
from autumn_core.model import ZERO, CustomerState, InvoiceLineRecord, ProductState, RowState
from autumn_core.rules.rows import reset_row, starting_balance

#: Safety bound on transitions per pass (years of missed monthly periods still fit).
MAX_STEPS = 10_000


def settles(unit: Unit) -> bool:
    """Whether this unit records what lazy work owes (markers, invoices, charges)."""
    return unit.write and not billing.is_dry_run()


def in_trial_period(cp: ProductState) -> bool:
    """The current period is the trial (it ends at ``trial_ends_at``), not a paid period."""
    return (
        cp.trial_ends_at is not None
        and cp.current_period_start is not None
        and cp.current_period_start < cp.trial_ends_at
    )


def _next_step(
    state: CustomerState, now: datetime
) -> tuple[datetime, int, str, ProductState] | None:
    best: tuple[datetime, int, str, ProductState] | None = None

    def consider(at: datetime | None, rank: int, kind: str, cp: ProductState) -> None:
        nonlocal best
        if at is None or at > now:
            return
        if best is None or (at, rank) < (best[0], best[1]):
            best = (at, rank, kind, cp)

    for cp in state.products:
        if cp.status == "scheduled":
            consider(cp.started_at, 3, "start", cp)
            continue
        if not cp.is_live:
            continue
        recurring = not cp.free and not cp.one_off
        if cp.ends_at is not None and (
            not recurring or cp.current_period_end is None or cp.ends_at <= cp.current_period_end
        ):
            consider(cp.ends_at, 0, "end", cp)
        if recurring and cp.current_period_end is not None:
            kind = "convert" if in_trial_period(cp) else "renew"
            if cp.ends_at is None or cp.ends_at > cp.current_period_end:
                consider(cp.current_period_end, 1, kind, cp)
        elif cp.free and cp.trial_ends_at is not None:
            consider(cp.trial_ends_at, 0, "end", cp)  # T12: a free trial simply expires
    return best


def advance_products(unit: Unit, state: CustomerState) -> CustomerState:
    now = unit.now
    for _ in range(MAX_STEPS):
        step = _next_step(state, now)
        if step is None:
            break
        at, _, kind, cp = step
        if kind == "end":
            state = end_product(unit, state, cp, at)
        elif kind == "convert":
            state = convert_trial(unit, state, cp)
        elif kind == "renew":
            state = renew(unit, state, cp)
        else:
            state = start_scheduled(unit, state, cp)
    return state


def _rows(state: CustomerState, cp: ProductState) -> list[RowState]:
    return [r for r in state.rows if r.cp_id == cp.instance_id]


def _send(
    unit: Unit,
    state: CustomerState,
    cp: ProductState,
    lines: list[InvoiceLineRecord],
    key: str,
    period_end: datetime | None,
    reason: str = "renewal",
    *,
    at: datetime,
) -> tuple[CustomerState, bool]:
    """S7(6): send a renewal-type invoice; a refused payment makes the product past due (W4).

    The invoice is dated ``at``, the boundary it belongs to (a period end, a trial end), even
    when lazy work reaches it later: the library owns periods (D7, S7, T7).
    """
    if not lines or not settles(unit):
        return state, True
    sent = billing.charge(
        unit,
        state,
        lines,
        cp_id=cp.instance_id,
        key=key,
        period_end=period_end,
        reason=reason,
        at=at,
    )
    # Saved at once (not at flush): lazy work may run inside a call that lists invoices next.
    unit.tx.save_invoice(sent.invoice)
    state = billing.adopt(state, sent)
    return state, sent.outcome in ("paid", "local")


def end_product(unit: Unit, state: CustomerState, cp: ProductState, at: datetime) -> CustomerState:
    """X2/DF3: a canceling product reaches ``ends_at`` (or a free trial its end): final arrears
    once, expiry, then its successor."""
    product = billing.product_of(unit.ctx, cp)
    if (
        billing.is_recurring_live(cp)
        and cp.current_period_start is not None
        and not in_trial_period(cp)
        and settles(unit)
        and unit.tx.claim_renewal(cp.instance_id, cp.current_period_start)
    ):
        lines = billing.arrears_lines(
            unit.ctx, product, cp, _rows(state, cp), start=cp.current_period_start, end=at
        )
        state, _ = _send(unit, state, cp, lines, f"final:{cp.instance_id}", None, at=at)
    state = expire(state, cp, at)
    state = activate_successor(unit, state, cp, at)
    return _sync_cancel(unit, state)


def _sync_cancel(unit: Unit, state: CustomerState) -> CustomerState:
    """Tell the provider when no recurring fixed price is left (it mirrors them)."""
    gateway = unit.ctx.gateway
    if gateway is None or not settles(unit) or state.gateway_customer_id is None:
        return state
    if any(billing.is_recurring_live(p) for p in state.products):
        return state
    gateway.cancel_subscription(
        state.gateway_customer_id, idempotency_key=f"cancel:{state.pk}:{unit.now.isoformat()}"
    )
    return state


def _has_payment_method(unit: Unit, state: CustomerState) -> bool:
    """Without a provider-side customer there is no card. With one, only a write asks the
    provider; a read projects the conversion (the trial converts when a card is on file)."""
    gateway = unit.ctx.gateway
    if gateway is None:
        return True
    if state.gateway_customer_id is None:
        return False
    if not settles(unit):
        return not billing.is_dry_run()
    return gateway.has_payment_method(state.gateway_customer_id)


def convert_trial(unit: Unit, state: CustomerState, cp: ProductState) -> CustomerState:
    """T7/T8/T9: the trial ends; the first paid period starts at the trial end.

    Products trialing to the same end (merged into one cycle, T9) convert together, on one
    invoice of their in-advance lines only: usage during the trial is neither billed nor reset.
    """
    te = cp.current_period_end
    assert te is not None
    group = [
        p
        for p in state.products
        if billing.is_recurring_live(p) and in_trial_period(p) and p.current_period_end == te
    ]
    card_less = any(
        (p.trial_ends_at is not None) and not _requires_card(billing.product_of(unit.ctx, p))
        for p in group
    )
    if card_less and not _has_payment_method(unit, state):
        # T7: an unconverted card-less trial ends into the group's free default (DF3).
        for p in group:
            state = expire(state, p, te)
            state = activate_successor(unit, state, p, te)
        return state
    lines: list[InvoiceLineRecord] = []
    converted: list[ProductState] = []
    for p in group:
        product = billing.product_of(unit.ctx, p)
        new = with_period(p, product, anchor=te, start=te)
        new = attrs.evolve(new, billing_anchor=te)
        converted.append(new)
        state = replace_product(state, new)
        state = align_rows(state, new)
        lines += billing.cycle_lines(
            unit.ctx,
            product,
            new,
            state.rows,
            now=te,
            include_one_off=False,
        )
    state, ok = _send(
        unit,
        state,
        cp,
        lines,
        f"convert:{cp.instance_id}:{te.isoformat()}",
        converted[0].current_period_end,
        "conversion",
        at=te,
    )
    if not ok:
        for p in converted:
            state = replace_product(state, attrs.evolve(p, status="past_due"))
    return state


def _requires_card(product: Product) -> bool:
    return product.free_trial is None or product.free_trial.card_required


def align_rows(state: CustomerState, cp: ProductState) -> CustomerState:
    """Price-backed rows renew on the product's period: their next reset is its end. The rows
    are not reset by this: what open locks hold of them stays held (``follow_periods``)."""
    end = cp.current_period_end
    moved = {
        r.id: (r.next_reset_at, end)
        for r in state.rows
        if r.cp_id == cp.instance_id and r.renews_with_product and r.next_reset_at != end
    }
    if not moved:
        return state
    state = attrs.evolve(
        state,
        rows=tuple(attrs.evolve(r, next_reset_at=end) if r.id in moved else r for r in state.rows),
    )
    return follow_periods(state, moved)


def renew(unit: Unit, state: CustomerState, cp: ProductState) -> CustomerState:
    """S7: arrears of the ending period, the new period in advance, then the rows reset."""
    ctx = unit.ctx
    product = billing.product_of(ctx, cp)
    start, end = cp.current_period_start, cp.current_period_end
    assert start is not None and end is not None
    anchor = cp.billing_anchor or start
    new_end = period_end_from(anchor, product, end)
    quantities = {**cp.quantities, **(cp.pending_quantities or {})}
    claimed = settles(unit) and unit.tx.claim_renewal(cp.instance_id, start)
    rows = _rows(state, cp)
    lines: list[InvoiceLineRecord] = []
    if claimed:
        lines += billing.arrears_lines(ctx, product, cp, rows, start=start, end=end)
        lines += billing.adjustment_lines(cp, end, new_end)
    # S7(4): reset the price-backed rows (with pending quantities applied); P7: paid seats.
    new_rows: dict[str, RowState] = {}
    for r in rows:
        item = product.items[r.item_index] if r.item_index is not None else None
        if item is None:
            continue
        new = r
        if r.renews_with_product:
            new = reset_row(
                r,
                end,
                new_id=lambda: new_id("ro"),
                starting=starting_balance(item, quantities.get(item.feature_id)),
                next_reset_at=new_end,
            )
        elif item.is_prepaid and item.feature_id in (cp.pending_quantities or {}):
            start_units = starting_balance(item, quantities.get(item.feature_id))
            new = attrs.evolve(
                r, granted=start_units, balance=r.balance + (start_units - r.granted)
            )
        if new.allocated and new.billing == "usage":
            new = attrs.evolve(new, paid_seats=max(ZERO, new.usage - new.included))
        if new is not r:
            new_rows[r.id] = new
    state = attrs.evolve(state, rows=tuple(new_rows.get(r.id, r) for r in state.rows))
    renewed = attrs.evolve(
        cp,
        current_period_start=end,
        current_period_end=new_end,
        quantities=quantities,
        pending_quantities=None,
        next_cycle_adjustments=(),
    )
    state = replace_product(state, renewed)
    if claimed:
        lines += billing.advance_lines(
            ctx,
            product,
            renewed,
            state.rows,
            now=end,
            start=end,
            end=new_end,
            include_one_off=False,
        )
        state, ok = _send(
            unit,
            state,
            renewed,
            lines,
            f"renew:{cp.instance_id}:{start.isoformat()}",
            new_end,
            at=end,
        )
        status = "active" if ok and cp.status == "active" else ("past_due" if not ok else cp.status)
        if status != renewed.status:
            state = replace_product(state, attrs.evolve(renewed, status=status))
    return state


def start_scheduled(unit: Unit, state: CustomerState, cp: ProductState) -> CustomerState:
    """A4/S7: a scheduled product starts at its instant with fresh rows, billed in advance."""
    at = cp.started_at or unit.now
    product = billing.product_of(unit.ctx, cp)
    # Whatever still holds the group (it should have ended at the same instant) ends now.
    for other in list(state.products):
        if (
            other.is_live
            and other.is_main
            and other.group == cp.group
            and other.entity_id == cp.entity_id
        ):
            state = expire(state, other, at)
    state = drop_products(state, {cp.instance_id})
    live = attrs.evolve(cp, status="active", reset_anchor=at, billing_anchor=at)
    live = with_period(live, product, anchor=at, start=at)
    state = activate(unit, state, product, live, reset_anchor=at)
    state = align_rows(state, live)
    if product.is_recurring_paid or product.is_one_off:
        lines = billing.cycle_lines(
            unit.ctx,
            product,
            live,
            state.rows,
            now=at,
            include_one_off=True,
        )
        state, ok = _send(
            unit,
            state,
            live,
            lines,
            f"start:{cp.instance_id}",
            live.current_period_end,
            "switch",
            at=at,
        )
        if not ok:
            state = replace_product(state, attrs.evolve(live, status="past_due"))
    # Other scheduled products of the same group and scope cannot both start.
    others = {p.instance_id for p in scheduled_in(state, cp.group, cp.entity_id)}
    return drop_products(state, others)


__all__ = [
    "advance_products",
    "align_rows",
    "convert_trial",
    "end_product",
    "in_trial_period",
    "renew",
    "settles",
    "start_scheduled",
]
