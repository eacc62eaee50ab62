"""When a customer next has lazy work due (resets, renewals, trial ends, switches, expiries)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

# The model computes its due time with this rule, so the rule names only the fields it reads
# (``autumn_core.model`` records satisfy these) instead of importing the model.


class _Rollover(Protocol):
    @property
    def expires_at(self) -> datetime | None: ...


class _Row(Protocol):
    @property
    def renews_with_product(self) -> bool: ...
    @property
    def next_reset_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def rollovers(self) -> Sequence[_Rollover]: ...


class _Product(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def current_period_start(self) -> datetime | None: ...
    @property
    def current_period_end(self) -> datetime | None: ...
    @property
    def trial_ends_at(self) -> datetime | None: ...
    @property
    def ends_at(self) -> datetime | None: ...


class DueState(Protocol):
    """What ``next_due_at`` reads of a customer (``autumn_core.model.CustomerState``)."""

    @property
    def rows(self) -> Sequence[_Row]: ...
    @property
    def products(self) -> Sequence[_Product]: ...


def next_due_at(state: DueState) -> datetime | None:
    """The earliest instant at which something about this customer becomes due.

    Stores index customers by it so that ``process_due`` finds them without scanning; the
    app layer compares it with ``now`` to skip lazy work entirely on the hot path.
    """
    # Collected into one list and reduced once: this runs for every customer saved or loaded
    # after a change, so it avoids a call per candidate instant.
    times: list[datetime | None] = []
    add = times.append
    for row in state.rows:
        if not row.renews_with_product:
            add(row.next_reset_at)
        add(row.expires_at)
        for r in row.rollovers:
            add(r.expires_at)
    for p in state.products:
        if p.status == "expired":
            continue
        if p.status == "scheduled":
            add(p.started_at)
            continue
        add(p.current_period_end)
        # A converted trial keeps its trial_ends_at for history; only a running one is due.
        if p.trial_ends_at is not None and (
            p.current_period_start is None or p.current_period_start < p.trial_ends_at
        ):
            add(p.trial_ends_at)
        add(p.ends_at)
    present = [t for t in times if t is not None]
    return min(present) if present else None
