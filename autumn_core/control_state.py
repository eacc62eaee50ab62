"""The runtime state of billing controls, stored with the customer (docs/rules.md BC5-BC7).

Configuration lives in ``autumn_core.controls``; what the engine counts and holds lives here:
the balance holds of open locks (BC5) and the usage-window counters of usage limits (BC3). Both
are part of the customer aggregate, so they change in the same store transaction as the
balances they guard.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

ZERO = Decimal(0)


@attrs.frozen(slots=False)  # built on every reserve or settle: a dict __init__ is cheaper
class LockTake:
    """What a hold took from one balance row, so that a release gives exactly that back."""

    row_id: str
    #: The row's feature (a credit system's when the hold drew credits).
    feature_id: str
    #: Taken from the row's balance, in the row's own units.
    amount: Decimal
    #: Taken from each of its rollovers: (rollover id, amount).
    rollovers: tuple[tuple[str, Decimal], ...] = ()
    #: The row's ``next_reset_at`` when taken: a row reset since then already got it back.
    period: datetime | None = None

    @property
    def total(self) -> Decimal:
        if not self.rollovers:
            return self.amount + ZERO  # the sum below of no rollovers, without a generator
        return self.amount + sum((a for _, a in self.rollovers), ZERO)


@attrs.frozen(slots=False)  # built on every reserve or settle: a dict __init__ is cheaper
class LockState:
    """An open lock: balance held by ``check(..., lock=...)`` until finalized or expired."""

    id: str
    feature_id: str
    entity_id: str | None
    #: What was asked for and what is held, in units of ``feature_id``.
    requested: Decimal
    held: Decimal
    takes: tuple[LockTake, ...]
    created_at: datetime
    expires_at: datetime
    #: "reject", "cap" or "overflow": how the hold was taken and how a confirm deducts.
    overage: str = "reject"
    properties: Mapping[str, Any] = attrs.field(factory=dict)
    #: Units counted in usage windows at hold time: (feature_id, entity_id, window start, units).
    counted: tuple[tuple[str, str | None, datetime, Decimal], ...] = ()


@attrs.frozen
class UsageWindow:
    """Units of a feature used by a subject (an entity, or None for the customer) in a window."""

    feature_id: str
    entity_id: str | None
    start: datetime
    end: datetime
    used: Decimal


@attrs.frozen(slots=False)  # built on every reserve or settle: a dict __init__ is cheaper
class ControlState:
    locks: tuple[LockState, ...] = ()
    windows: tuple[UsageWindow, ...] = ()
    #: When lazy work must next look at the holds: at or before every open lock's expiry. It
    #: moves earlier when a lock opens and later only once it has passed, so that opening and
    #: settling locks does not move the customer's due time (a store index entry) every call.
    lock_due: datetime | None = None

    @property
    def next_expiry(self) -> datetime | None:
        return min((lk.expires_at for lk in self.locks), default=None)

    @property
    def due(self) -> datetime | None:
        """When the holds next need lazy work (None: never)."""
        if self.lock_due is not None:
            return self.lock_due
        return self.next_expiry if self.locks else None

    def opened(self, lock: LockState) -> ControlState:
        """This state with ``lock`` open."""
        due = self.due
        if due is None or lock.expires_at < due:
            due = lock.expires_at
        return ControlState((*self.locks, lock), self.windows, due)

    def lock(self, lock_id: str) -> LockState | None:
        for lk in self.locks:
            if lk.id == lock_id:
                return lk
        return None

    def window(self, feature_id: str, entity_id: str | None) -> UsageWindow | None:
        for w in self.windows:
            if w.feature_id == feature_id and w.entity_id == entity_id:
                return w
        return None


NO_STATE = ControlState()

__all__ = ["NO_STATE", "ControlState", "LockState", "LockTake", "UsageWindow"]
