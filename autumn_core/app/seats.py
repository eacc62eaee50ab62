"""Paid seats of usage-billed allocated rows (docs/rules.md P7, E17, E18).

A row keeps ``paid_seats`` >= max(0, usage - included). Seats above the paid count are billed
per ``on_increase``; a decrease follows ``on_decrease`` (``none`` keeps them paid as released
seats, which the next increase reuses without a charge). Renewals reset the count (S7).
Called after tracks and entity creates/deletes that changed such rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import attrs

from autumn_core.app import billing
from autumn_core.app.unit import Unit
from autumn_core.errors import PaymentFailed
from autumn_core.model import ZERO, CustomerState, InvoiceLineRecord, RowState
from autumn_core.rules.pricing import money, prorate, seats_amount


def settle_seats(unit: Unit, state: CustomerState, row_ids: Sequence[str]) -> CustomerState:
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
        return state
    state = attrs.evolve(state, rows=tuple(changed.get(r.id, r) for r in state.rows))
    for cp_id, adds in adjustments.items():
        cp = state.product_instance(cp_id)
        assert cp is not None
        state = attrs.evolve(
            state,
            products=tuple(
                attrs.evolve(p, next_cycle_adjustments=(*p.next_cycle_adjustments, *adds))
                if p.instance_id == cp_id
                else p
                for p in state.products
            ),
        )
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
