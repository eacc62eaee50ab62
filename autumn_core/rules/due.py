"""When a customer next has lazy work due (resets, renewals, trial ends, switches, expiries)."""

from __future__ import annotations

from datetime import datetime

from autumn_core.model import CustomerState


def next_due_at(state: CustomerState) -> datetime | None:
    """The earliest instant at which something about this customer becomes due.

    Stores index customers by it so that ``process_due`` finds them without scanning; the
    app layer compares it with ``now`` to skip lazy work entirely on the hot path.
    """
    best: datetime | None = None

    def consider(t: datetime | None) -> None:
        nonlocal best
        if t is not None and (best is None or t < best):
            best = t

    for row in state.rows:
        if not row.renews_with_product:
            consider(row.next_reset_at)
        consider(row.expires_at)
        for r in row.rollovers:
            consider(r.expires_at)
    for p in state.products:
        if p.status == "expired":
            continue
        if p.status == "scheduled":
            consider(p.started_at)
            continue
        consider(p.current_period_end)
        # A converted trial keeps its trial_ends_at for history; only a running one is due.
        if p.trial_ends_at is not None and (
            p.current_period_start is None or p.current_period_start < p.trial_ends_at
        ):
            consider(p.trial_ends_at)
        consider(p.ends_at)
    return best
