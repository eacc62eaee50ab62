"""Paid seats of usage-billed allocated rows (docs/rules.md P7, E17, E18).

A row keeps ``paid_seats`` >= max(0, usage - included). Seats above the paid count are billed
per ``on_increase``; a decrease follows ``on_decrease`` (``none`` keeps them paid as released
seats, which the next increase reuses without a charge). Renewals reset the count (S7).
Called after tracks and entity creates/deletes that changed such rows.

Entities are seats (EN2): when rows of an allocated feature appear (an attach, a default, a
grant, a switch) or the rows that counted the entities end, ``count_entities`` makes the
customer-level usage reach the number of live entities again.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import attrs

from autumn_core.app import billing
from autumn_core.app.unit import Unit
from autumn_core.app.views import live_rows
from autumn_core.errors import InsufficientBalance, PaymentFailed
from autumn_core.model import ZERO, CustomerState, InvoiceLineRecord, RowState
from autumn_core.rules.deduction import ONE, Candidate, deduct
from autumn_core.rules.order import order_key
from autumn_core.rules.pricing import money, prorate, seats_amount


def settle_seats(unit: Unit, state: CustomerState, row_ids: Sequence[str]) -> CustomerState:
    """Bring the paid seats of these rows to their usage, charging each product's lines now."""
    state, by_cp = seat_changes(unit, state, row_ids)
    for cp_id, lines in by_cp.items():
        # One invoice per seat change event (API.md), charged before the change commits.
        # Deterministic for this attempt: a re-run of the transaction loads the same version,
        # so the gateway replays the charge; a later seat change is a later version.
        sent = billing.charge(
            unit,
            state,
            lines,
            cp_id=cp_id,
            key=f"seats:{cp_id}:v{state.version}",
            reason="seats",
        )
        if sent.outcome == "failed":
            raise PaymentFailed(f"payment for seats failed for customer {state.id!r}")
        state = billing.adopt(state, sent)
        unit.invoices.append(sent.invoice)
    return state


def seat_changes(
    unit: Unit, state: CustomerState, row_ids: Sequence[str]
) -> tuple[CustomerState, dict[str, list[InvoiceLineRecord]]]:
    """The rows' paid seats brought to their usage; the lines to bill now, by product instance
    (``prorate_next_cycle`` amounts go to the product's next-cycle adjustments instead)."""
    ctx = unit.ctx
    now = unit.now
    wanted = set(row_ids)
    changed: dict[str, RowState] = {}
    by_cp: dict[str, list[InvoiceLineRecord]] = {}
    adjustments: dict[str, list[tuple[str, str, Decimal]]] = {}
    for row in state.rows:
        if row.id not in wanted or not row.allocated or row.billing != "usage":
            continue
        if row.cp_id is None or row.item_index is None:
            continue
        cp = state.product_instance(row.cp_id)
        if cp is None:
            continue
        product = billing.product_of(ctx, cp)
        item = product.items[row.item_index]
        used = max(ZERO, row.usage - row.included)
        paid = row.paid_seats
        if used == paid:
            continue
        trialing = cp.is_trialing(now) or cp.free
        start, end = cp.current_period_start, cp.current_period_end
        name = product.name or product.id
        if used > paid:
            full = seats_amount(item, used) - seats_amount(item, paid)
            behaviour = item.on_increase
            desc = f"{name}: {used - paid} more {row.feature_id}"
            qty = used - paid
        else:
            if item.on_decrease == "none":
                continue  # released seats stay paid until the renewal (P7, E17)
            full = seats_amount(item, used) - seats_amount(item, paid)
            behaviour = item.on_decrease
            desc = f"{name}: {paid - used} fewer {row.feature_id}"
            qty = used - paid
        changed[row.id] = attrs.evolve(row, paid_seats=used)
        if trialing:
            continue  # a trial is charged nothing; conversion bills the seats (T8)
        if behaviour == "bill_immediately":
            amount = full
        elif behaviour == "prorate_immediately":
            amount = prorate(full, start, end, now)
        elif behaviour == "prorate_next_cycle":
            adjustments.setdefault(cp.instance_id, []).append(
                (desc, row.feature_id, money(prorate(full, start, end, now)))
            )
            continue
        else:  # bill_next_cycle, no_prorations
            continue
        by_cp.setdefault(cp.instance_id, []).append(
            billing.line(
                desc,
                amount,
                product_id=product.id,
                feature_id=row.feature_id,
                quantity=qty,
                start=now,
                end=end,
            )
        )
    if not changed:
        return state, {}
    state = attrs.evolve(state, rows=tuple(changed.get(r.id, r) for r in state.rows))
    for cp_id, adds in adjustments.items():
        state = attrs.evolve(
            state,
            products=tuple(
                attrs.evolve(p, next_cycle_adjustments=(*p.next_cycle_adjustments, *adds))
                if p.instance_id == cp_id
                else p
                for p in state.products
            ),
        )
    return state, by_cp


def count_entities(
    unit: Unit,
    state: CustomerState,
    *,
    into: Sequence[RowState] | None = None,
    refuse: bool,
) -> CustomerState:
    """EN2: the live entities of each allocated feature count as customer-level usage.

    Only the shortfall is counted (entities minus the usage the customer-level rows already
    hold), so usage carried across a plan change is not counted twice. ``into`` names the new
    rows that take it (their paid seats are seeded here and billed with their product's first
    period); None spreads it over every live customer-level row, as entity creates would, and
    charges the paid seats that changed now. A shortfall past ``max_purchase`` raises
    ``InsufficientBalance`` when ``refuse``; otherwise (due work, which cannot be refused) it
    goes over the limit on the first row.
    """
    state, existing = _count(unit, state, into, refuse)
    return settle_seats(unit, state, existing) if existing else state


def count_entities_replacing(
    unit: Unit, state: CustomerState, *, into: Sequence[RowState]
) -> tuple[CustomerState, list[InvoiceLineRecord]]:
    """EN2 for an immediate switch (which ended the rows that counted the entities): the new
    rows count them first, then the rows that remain; their new paid seats come back as lines
    for the switch's own invoice, so nothing is charged apart from it."""
    state, _ = _count(unit, state, into, True)
    state, existing = _count(unit, state, None, True)
    state, by_cp = seat_changes(unit, state, existing)
    return state, [line for lines in by_cp.values() for line in lines]


def _count(
    unit: Unit, state: CustomerState, into: Sequence[RowState] | None, refuse: bool
) -> tuple[CustomerState, list[str]]:
    """The shortfall counted; returns the state and the usage-billed rows it changed that were
    not in ``into`` (their paid seats are still to settle)."""
    if not state.entities:
        return state, []
    ctx = unit.ctx
    now = unit.now
    counts: dict[str, int] = {}
    for entity in state.entities:
        counts[entity.feature_id] = counts.get(entity.feature_id, 0) + 1
    fresh = None if into is None else {r.id for r in into}
    rows = live_rows(ctx, state, now)
    existing: list[str] = []
    for feature_id, count in sorted(counts.items()):
        own = [r for r in rows if r.feature_id == feature_id and r.entity_id is None]
        takers = own if fresh is None else [r for r in own if r.id in fresh]
        if not takers:
            continue
        held = sum((r.unlimited_usage if r.unlimited else r.usage for r in own), ZERO)
        shortfall = Decimal(count) - held
        if shortfall <= 0:
            continue
        # As an entity create deducts (EN2): the feature's own customer-level rows, in order.
        reverse = ctx.options.reverse_deduction_order
        takers.sort(key=lambda r: order_key(r, own=True, entity_id=None, reverse=reverse))
        cands = [Candidate(r, ONE) for r in takers]
        result = deduct(cands, shortfall, "cap", now)
        if result.remainder > 0:
            if refuse:
                raise InsufficientBalance(
                    f"customer {state.id!r} has {count} {feature_id!r} entities, more than "
                    "its plan allows (max_purchase)"
                )
            result = deduct(cands, shortfall, "overflow", now)
        changed = dict(result.changed)
        for rid, row in result.changed.items():
            if not row.allocated or row.billing != "usage":
                continue
            if fresh is not None and rid in fresh:
                changed[rid] = attrs.evolve(row, paid_seats=max(ZERO, row.usage - row.included))
            else:
                existing.append(rid)
        state = attrs.evolve(state, rows=tuple(changed.get(r.id, r) for r in state.rows))
        rows = [changed.get(r.id, r) for r in rows]
    return state, existing
