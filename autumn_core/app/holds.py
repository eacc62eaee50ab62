"""Balance holds of locks: what a hold took, giving it back, and expiry (docs/rules.md BC5).

A hold is a deduction recorded with the rows it took from (``LockTake``). Releasing it gives
each row exactly what was taken, unless the row was reset since (the reset already refilled
it) or is gone. Expiry is lazy work: any read sees an expired hold released, and the next
write (or ``process_due``) records the release.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from autumn_core.app.unit import Unit
from autumn_core.control_state import ControlState, LockState, LockTake
from autumn_core.model import (
    ZERO,
    CustomerState,
    PendingRecord,
    RolloverState,
    RowState,
    replace,
    with_balance,
    with_control_state,
    with_rows_held,
)
from autumn_core.rules.deduction import Candidate
from autumn_core.values import arithmetic

#: ``PendingRecord.kind`` of the lock index: lock id -> customer, and the lock's status.
LOCK_KIND = "lock"
#: How long after its expiry a lock is remembered (Autumn: its receipt's TTL is an hour past
#: ``expires_at``).
FORGET_AFTER = timedelta(hours=1)


def lock_key(lock_id: str) -> str:
    return f"lock:{lock_id}"


def takes_of(cands: Sequence[Candidate], changed: Mapping[str, RowState]) -> tuple[LockTake, ...]:
    """What a deduction took from each row (balance and rollovers), from its candidates and
    its changed rows."""
    if len(changed) == 1:
        # One row changed (most holds): written out when it has no rollovers.
        ((rid, new),) = changed.items()
        for c in cands:
            old = c.row
            if old.id == rid:
                if old.rollovers:
                    break
                amount = old.balance - new.balance
                if not amount:
                    return ()
                return (LockTake(rid, old.feature_id, amount, (), old.next_reset_at),)
    before = {c.row.id: c.row for c in cands}
    takes = []
    for rid, new in changed.items():
        old = before[rid]
        rollovers = tuple(
            (o.id, o.balance - n.balance)
            for o, n in zip(old.rollovers, new.rollovers, strict=True)
            if o.balance != n.balance
        )
        amount = old.balance - new.balance
        if amount or rollovers:
            takes.append(LockTake(rid, old.feature_id, amount, rollovers, old.next_reset_at))
    return tuple(takes)


def give_back(state: CustomerState, lock: LockState) -> CustomerState:
    """``state`` with the lock's takes returned to their rows and its window counts undone,
    and the lock removed."""
    return _give(state, lock.id, lock.takes, lock.counted)


def _give(
    state: CustomerState,
    lock_id: str,
    given: tuple[LockTake, ...],
    counted: tuple[tuple[str, str | None, datetime, Decimal], ...],
) -> CustomerState:
    """``state`` with ``given`` returned to their rows, ``counted`` un-counted from the usage
    windows, and the lock ``lock_id`` removed."""
    returned: dict[str, RowState] = {}
    if given:
        takes = {t.row_id: t for t in given}
        returned = {
            r.id: _returned(r, take)
            for r in state.rows
            if (take := takes.get(r.id)) is not None and r.next_reset_at == take.period
        }
    cs = state.control_state
    windows = None
    if counted:
        units_of = {(fid, we, start): units for fid, we, start, units in counted}
        windows = tuple(
            replace(w, used=max(ZERO, w.used - units_of[key]))
            if (key := (w.feature_id, w.entity_id, w.start)) in units_of
            else w
            for w in cs.windows
        )
    return with_rows_held(state, returned, cs.without(lock_id, windows))


def keep_part(state: CustomerState, lock: LockState, value: Decimal) -> CustomerState | None:
    """``state`` with the lock settled at ``value`` <= what it holds: what the hold took beyond
    ``value`` is given back, the last take first (the reverse of the deduction), the windows
    un-count it, and the lock is removed. Takes from rows reset since were spent in their
    period: they count as used first, and nothing is given back to them. None when the hold
    drew on a credit system (other units): the caller then gives the hold back whole and
    deducts ``value`` afresh."""
    takes = lock.takes
    if len(takes) == 1 and not lock.counted:
        # One row held from, uncounted (what most holds are): written out.
        take = takes[0]
        if take.feature_id != lock.feature_id:
            return None
        if not take.rollovers:
            return _keep_one(state, lock.id, take, lock.held - value)
    elif any(t.feature_id != lock.feature_id for t in takes):
        return None
    given = lock.held - value
    back = given
    partial: list[LockTake] = []
    for take in reversed([t for t in takes if _unreset(state, t)]):
        if back <= 0:
            break
        amount = min(back, take.amount)
        back -= amount
        rollovers = []
        for rid, taken in reversed(take.rollovers):
            part = min(back, taken)
            back -= part
            if part:
                rollovers.append((rid, part))
        partial.append(
            LockTake(take.row_id, take.feature_id, amount, tuple(reversed(rollovers)), take.period)
        )
    counted = tuple((fid, we, start, min(units, given)) for fid, we, start, units in lock.counted)
    return _give(state, lock.id, tuple(partial), counted)


def keep_spent(state: CustomerState, lock: LockState, value: Decimal) -> CustomerState | None:
    """``keep_part`` of a hold every row of which was reset since it was taken: it was spent in
    that period, so nothing is given back and the lock is removed; the windows of the lock's
    own feature un-count the units not used (a credit system's window keeps the credits it
    counted). None when a row it took from was not reset (or it took nothing)."""
    if not lock.takes or any(_unreset(state, t) for t in lock.takes):
        return None
    unused = lock.held - value
    counted = tuple(
        (fid, we, start, min(units, unused) if fid == lock.feature_id else ZERO)
        for fid, we, start, units in lock.counted
    )
    return _give(state, lock.id, (), counted)


def spent_units(state: CustomerState, lock: LockState, costs: Mapping[str, Decimal]) -> Decimal:
    """What the takes from rows reset since the hold cover, in units of the lock's feature
    (``costs``: credits per unit, by credit system): spent in their period. Zero when no row
    was reset (most holds)."""
    spent = ZERO
    for t in lock.takes:
        if _unreset(state, t):
            continue
        if t.feature_id == lock.feature_id:
            spent += t.total
        else:
            cost = costs.get(t.feature_id)
            if cost:
                with arithmetic():
                    spent += t.total / cost
    return spent


def give_back_unspent(
    state: CustomerState, lock: LockState, costs: Mapping[str, Decimal]
) -> tuple[CustomerState, Decimal]:
    """``give_back`` of a hold some rows of which were reset since (``spent_units``): only the
    takes of the others are given back, and the windows keep what the spent takes counted.
    Returns the state and the units spent."""
    spent = spent_units(state, lock, costs)
    if not spent:
        return give_back(state, lock), ZERO
    unspent = tuple(t for t in lock.takes if _unreset(state, t))
    back: dict[str, Decimal] = {}
    for t in unspent:
        back[t.feature_id] = back.get(t.feature_id, ZERO) + t.total
    with arithmetic():
        own = lock.held - spent
        counted = tuple(
            (fid, we, start, min(units, own if fid == lock.feature_id else back.get(fid, ZERO)))
            for fid, we, start, units in lock.counted
        )
    return _give(state, lock.id, unspent, counted), spent


def _unreset(state: CustomerState, take: LockTake) -> bool:
    """Whether the row of a take is there and in the period the take was taken in."""
    for r in state.rows:
        if r.id == take.row_id:
            return r.next_reset_at == take.period
    return False


def follow_periods(
    state: CustomerState, moved: Mapping[str, tuple[datetime | None, datetime | None]]
) -> CustomerState:
    """``state`` whose rows ``moved`` changed period without a reset (row id: (old, new)
    ``next_reset_at``): the takes of open locks from them follow, so they stay held."""
    cs = state.control_state
    if not cs.locks:
        return state
    locks = []
    for lk in cs.locks:
        takes = tuple(
            replace(t, period=moved[t.row_id][1])
            if t.row_id in moved and t.period == moved[t.row_id][0]
            else t
            for t in lk.takes
        )
        locks.append(lk if takes == lk.takes else replace(lk, takes=takes))
    return with_control_state(state, ControlState(tuple(locks), cs.windows, cs.lock_due))


def _keep_one(state: CustomerState, lock_id: str, take: LockTake, back: Decimal) -> CustomerState:
    """``keep_part`` of a hold of one take without rollovers: ``back`` of it returned to its
    row (unless reset since, or gone), and the lock removed."""
    control = state.control_state.without(lock_id)
    if back > 0:
        rid = take.row_id
        for r in state.rows:
            if r.id == rid:
                if r.next_reset_at == take.period:
                    amount = take.amount if take.amount < back else back  # min()
                    back_row = {rid: with_balance(r, r.balance + amount)}
                    return with_rows_held(state, back_row, control)
                break
    return with_control_state(state, control)


def _returned(row: RowState, take: LockTake) -> RowState:
    if not take.rollovers:
        return with_balance(row, row.balance + take.amount)
    back = dict(take.rollovers)
    rollovers = tuple(
        RolloverState(r.id, r.amount, r.balance + back[r.id], r.expires_at, r.created_at)
        if r.id in back
        else r
        for r in row.rollovers
    )
    return replace(row, balance=row.balance + take.amount, rollovers=rollovers)


def index_record(
    state: CustomerState, lock: LockState, status: str, now: datetime
) -> PendingRecord:
    payload: dict[str, Any] = {
        "status": status,
        "feature_id": lock.feature_id,
        "entity_id": lock.entity_id,
        "requested": str(lock.requested),
        "held": str(lock.held),
        "expires_at": lock.expires_at.isoformat(),
    }
    return PendingRecord(f"lock:{lock.id}", state.pk, LOCK_KIND, payload, now)  # lock_key


def release_expired(unit: Unit, state: CustomerState, *, record: bool) -> CustomerState:
    """Lazy work, before any reset or renewal: expired holds released. ``record`` (a write
    that settles) also marks each lock expired in the index, so finalizing it later is
    ``LockExpired``. Run first, so that a renewal neither bills nor resets what a lock that
    expired before it held; a take from a row whose reset came before the lock expired was
    spent in that row's period, and is not given back (whenever the lazy work runs)."""
    cs = state.control_state
    now = unit.now
    if cs.lock_due is None and not cs.locks:
        return state
    for lk in [lk for lk in cs.locks if lk.expires_at <= now]:
        at = lk.expires_at
        unspent = tuple(t for t in lk.takes if t.period is None or at <= t.period)
        state = _give(state, lk.id, unspent, lk.counted)
        if record and now < forget_at(at):
            unit.tx.put_pending(index_record(state, lk, "expired", now))
    cs = state.control_state
    if cs.lock_due is not None and cs.lock_due <= now:
        state = replace(state, control_state=cs.with_lock_due(cs.next_expiry))
    return state


def forget_at(expires_at: datetime) -> datetime:
    """When the lock index forgets a lock (its id may then be used again): an hour after it
    expires, as Autumn keeps a lock's receipt."""
    return expires_at + FORGET_AFTER


def held_total(lock: LockState) -> Decimal:
    return sum((t.total for t in lock.takes), ZERO)


def forget_entity(unit: Unit, state: CustomerState, entity_id: str) -> CustomerState:
    """Before an entity is deleted: its holds given back (to the customer's rows it drew on)
    and recorded released in the lock index (a finalize of one then answers as after a
    release), and its usage windows dropped."""
    cs = state.control_state
    for lk in cs.locks:
        if lk.entity_id == entity_id:
            state = give_back(state, lk)
            unit.tx.put_pending(index_record(state, lk, "released", unit.now))
    cs = state.control_state
    windows = tuple(w for w in cs.windows if w.entity_id != entity_id)
    if len(windows) == len(cs.windows):
        return state
    return replace(state, control_state=cs.with_windows(windows))
