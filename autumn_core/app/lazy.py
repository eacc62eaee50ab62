"""Lazy work: everything due by ``now``, applied on any read or write of a customer (S3, S4).

A write unit records what it does (renewal markers, invoices, charges); a read unit or a
preview applies the same transitions as a projection that is never saved and moves no money
(``renewals.settles``). The unit of work calls this through the hook the facade installs.
"""

from __future__ import annotations

import attrs

from autumn_core.app.context import new_id
from autumn_core.app.holds import release_expired
from autumn_core.app.renewals import advance_products, settles
from autumn_core.app.unit import Unit
from autumn_core.model import CustomerState, RowState
from autumn_core.rules.rows import due_for_free_reset, reset_row


def apply_due(unit: Unit, state: CustomerState) -> CustomerState:
    """Expired balance holds first (BC5: what a hold spent in a period ending since is
    settled there), then product transitions (renewals, trial ends, switches), then free
    resets and expiries."""
    state = release_expired(unit, state, record=settles(unit))
    state = advance_products(unit, state)
    return reset_free_rows(unit, state)


def reset_free_rows(unit: Unit, state: CustomerState) -> CustomerState:
    now = unit.now
    past_due = {p.instance_id for p in state.products if p.status == "past_due"}
    persist = unit.ctx.options.persist_free_overage
    rows: list[RowState] = []
    changed = False
    for row in state.rows:
        if row.expires_at is not None and row.expires_at <= now:
            changed = True
            continue
        new = row
        if due_for_free_reset(row, now) and row.cp_id not in past_due:
            new = reset_row(row, now, new_id=lambda: new_id("ro"), persist_overage=persist)
        elif any(r.expires_at is not None and r.expires_at <= now for r in row.rollovers):
            new = attrs.evolve(
                row,
                rollovers=tuple(
                    r for r in row.rollovers if r.expires_at is None or r.expires_at > now
                ),
            )
        changed = changed or new is not row
        rows.append(new)
    if not changed:
        return state
    return attrs.evolve(state, rows=tuple(rows))
