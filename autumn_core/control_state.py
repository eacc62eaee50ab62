"""The runtime state of billing controls, stored with the customer (docs/rules.md BC5-BC7).

Configuration lives in ``autumn_core.controls``; what the engine counts and holds lives here:
the balance holds of open locks (BC5) and the usage-window counters of usage limits (BC3). Both
are part of the customer aggregate, so they change in the same store transaction as the
balances they guard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from autumn_core.values import PRECISION, arithmetic

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
        new = ControlState((*self.locks, lock), self.windows, due)
        memo = self.__dict__
        index = memo.get(_BY_ID)
        if index is not None:
            new.__dict__[_BY_ID] = {**index, lock.id: lock}
        held: _Held | None = memo.get(_HELD)
        if held is not None:
            new.__dict__[_HELD] = held.changed(lock.takes, 1)
        return new

    def without(self, lock_id: str, windows: tuple[UsageWindow, ...] | None = None) -> ControlState:
        """This state with the lock ``lock_id`` gone (settled), and ``windows`` when given.

        What is kept is carried: the lock index without it, the held totals less its takes."""
        locks = self.locks
        if windows is None:
            windows = self.windows
        if len(locks) == 1 and locks[0].id == lock_id:
            # The last lock (most settles): nothing is left to keep.
            return ControlState((), windows, self.lock_due)
        gone = self.lock(lock_id)
        rest = locks if gone is None else tuple(lk for lk in locks if lk is not gone)
        new = ControlState(rest, windows, self.lock_due)
        index = self.__dict__.get(_BY_ID)
        if index is not None:
            if gone is not None:
                index = dict(index)
                del index[lock_id]
            new.__dict__[_BY_ID] = index
        held: _Held | None = self.__dict__.get(_HELD)
        if held is not None:
            new.__dict__[_HELD] = held if gone is None else held.changed(gone.takes, -1)
        return new

    def with_windows(self, windows: tuple[UsageWindow, ...]) -> ControlState:
        """This state with other usage windows (the same locks: what is kept is carried)."""
        return self._carried(ControlState(self.locks, windows, self.lock_due))

    def with_lock_due(self, lock_due: datetime | None) -> ControlState:
        """This state with another due hint (the same locks: what is kept is carried)."""
        return self._carried(ControlState(self.locks, self.windows, lock_due))

    def _carried(self, new: ControlState) -> ControlState:
        memo = self.__dict__
        for name in (_BY_ID, _HELD):
            kept = memo.get(name)
            if kept is not None:
                new.__dict__[name] = kept
        return new

    def lock(self, lock_id: str) -> LockState | None:
        locks = self.locks
        if len(locks) <= FEW_LOCKS:
            for lk in locks:
                if lk.id == lock_id:
                    return lk
            return None
        index: dict[str, LockState] | None = self.__dict__.get(_BY_ID)
        if index is None:
            index = self.__dict__[_BY_ID] = {lk.id: lk for lk in locks}
        return index.get(lock_id)

    def held(self) -> Mapping[HeldKey, Decimal]:
        """What the open locks hold, by (row id, the row's feature id, the row's period when
        taken): their takes summed. A take of a period the row has left is no longer held (the
        reset refilled the row); the period in the key lets a reader leave those out.
        Kept on this (immutable) state once computed, and carried to the states ``opened``,
        ``without``, ``with_windows`` and ``with_lock_due`` make from it, so that a customer
        with many locks open pays for them once, not on every balance it shows."""
        held: _Held | None = self.__dict__.get(_HELD)
        if held is None:
            held = self.__dict__[_HELD] = _NO_HELD.changed(
                [t for lk in self.locks for t in lk.takes], 1
            )
        return held.totals

    def window(self, feature_id: str, entity_id: str | None) -> UsageWindow | None:
        for w in self.windows:
            if w.feature_id == feature_id and w.entity_id == entity_id:
                return w
        return None


#: Up to this many open locks, a lock is found by a scan of them, and what they hold is summed
#: afresh, rather than through what a state keeps.
FEW_LOCKS = 8
#: Where a ``ControlState`` keeps its lock index and its held totals (in its ``__dict__``: the
#: record is frozen, and every copy of it is built by ``__init__``, so none carries them stale).
_BY_ID = "_by_id"
_HELD = "_held"


#: A row's id, its feature's id, and its period (``next_reset_at``) when a hold took from it.
HeldKey = tuple[str, str, datetime | None]


class _Held:
    """What open locks hold, by (row id, the row's feature id, the row's period): each total
    spelled as a fresh sum of the takes open spells it (``Decimal`` addition keeps the
    smallest exponent of its terms, and so would a subtraction, of the term taken away), with
    how many takes of each exponent it sums."""

    __slots__ = ("exponents", "totals")

    def __init__(
        self,
        totals: dict[HeldKey, Decimal],
        exponents: dict[HeldKey, dict[int, int]],
    ) -> None:
        self.totals = totals
        self.exponents = exponents

    def changed(self, takes: Iterable[LockTake], sign: int) -> _Held:
        """These totals with ``takes`` added (``sign`` 1) or taken away (-1), in the engine's
        Decimal context whoever asks (totals are kept); a total that comes to zero is left out."""
        totals = dict(self.totals)
        exponents = dict(self.exponents)
        with arithmetic():
            for t in takes:
                key = (t.row_id, t.feature_id, t.period)
                amount = t.total
                exponent = amount.as_tuple().exponent
                assert isinstance(exponent, int)  # a total is finite
                counts = dict(exponents.get(key, {}))
                counts[exponent] = counts.get(exponent, 0) + sign
                if not counts[exponent]:
                    del counts[exponent]
                if not counts:
                    totals.pop(key, None)
                    exponents.pop(key, None)
                    continue
                total = totals.get(key, ZERO)
                total = total + amount if sign > 0 else total - amount
                exponents[key] = counts
                if not total:
                    totals.pop(key, None)  # as a fresh sum shows it: nothing held
                    continue
                least = min(0, *counts)  # a fresh sum starts from ZERO
                spelled = total.as_tuple()
                now = spelled.exponent
                assert isinstance(now, int)
                # Spelled back to ``least`` only when that is exact and fits the precision: a
                # total already rounded (takes of ~PRECISION digits) stays as the sum rounded
                # it, as a fresh sum would.
                if now != least and len(spelled.digits) + now - least <= PRECISION:
                    respelled = total.quantize(Decimal((0, (1,), least)))
                    if respelled == total:
                        total = respelled
                totals[key] = total
        return _Held(totals, exponents)


_NO_HELD = _Held({}, {})


NO_STATE = ControlState()

__all__ = [
    "FEW_LOCKS",
    "NO_STATE",
    "ControlState",
    "HeldKey",
    "LockState",
    "LockTake",
    "UsageWindow",
]
