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
from autumn_core.control_state import LockState, LockTake
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
from autumn_core.rules.deduction import ONE, Candidate
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


def keep_part(
    state: CustomerState, lock: LockState, value: Decimal, costs: Mapping[str, Decimal]
) -> CustomerState | None:
    """``state`` with the lock settled at ``value`` <= what it holds: what the hold took beyond
    ``value`` is given back, the last take first (the reverse of the deduction), the windows
    un-count it, and the lock is removed. A take of a credit system gives back what the units
    not used cost in it (``costs``: credits per unit of the lock's feature, by credit system).
    A take from a row reset since is not given back (the reset refilled the row). None when a
    take's credit system no longer prices the feature: the caller then gives the hold back
    whole and deducts ``value`` afresh."""
    takes = lock.takes
    own = lock.feature_id
    back = lock.held - value
    if len(takes) == 1 and not lock.counted and not takes[0].rollovers:
        # One row held from, uncounted, no rollovers (what most holds are): written out.
        take = takes[0]
        if take.feature_id == own:
            return _keep_one(state, lock.id, take, back)
        cost = costs.get(take.feature_id)
        if cost is None:
            return None
        with arithmetic():
            return _keep_one(state, lock.id, take, back * cost)
    partial: list[LockTake] = []
    given: dict[str, Decimal] = {}
    with arithmetic():
        for take in reversed(takes):
            if back <= 0:
                break
            fid = take.feature_id
            cost = ONE if fid == own else costs.get(fid)
            if cost is None:
                return None
            want = back if fid == own else back * cost  # in the take's units
            amount = min(want, take.amount)
            left = want - amount
            rollovers = []
            for rid, taken in reversed(take.rollovers):
                part = min(left, taken)
                left -= part
                if part:
                    rollovers.append((rid, part))
            out = want - left
            back -= out if fid == own else out / cost
            given[fid] = given.get(fid, ZERO) + out
            partial.append(
                LockTake(take.row_id, fid, amount, tuple(reversed(rollovers)), take.period)
            )
        unused = lock.held - value
        counted = tuple(
            (fid, we, start, min(units, unused if fid == own else given.get(fid, ZERO)))
            for fid, we, start, units in lock.counted
        )
    return _give(state, lock.id, tuple(partial), counted)


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
    """Lazy work: expired holds released. ``record`` (a write that settles) also marks each
    lock expired in the index, so finalizing it later is ``LockExpired``."""
    cs = state.control_state
    now = unit.now
    if cs.lock_due is None and not cs.locks:
        return state
    expired = [lk for lk in cs.locks if lk.expires_at <= now]
    for lk in expired:
        state = give_back(state, lk)
        if record and now < forget_at(lk.expires_at):
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
