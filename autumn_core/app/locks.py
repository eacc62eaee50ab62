"""Reserve, then finalize: ``check(..., lock=...)`` and ``balances.finalize`` (BC5, BC7).

The lock index (a ``PendingRecord`` per lock id, kind ``lock``) maps a lock id to its customer
and keeps its status after the hold is gone (``held``, ``confirmed``, ``released``,
``expired``), so that a second finalize is answered, not applied again. It is written in the
transaction that changes the hold. Reads of it that decide anything happen after the customer
is loaded for update, so two finalizers of one lock are serialized by the customer's lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs

from autumn_core.app import signals
from autumn_core.app.context import Context
from autumn_core.app.holds import (
    LOCK_KIND,
    forget_at,
    give_back,
    give_back_unspent,
    index_record,
    keep_part,
    keep_spent,
    lock_key,
    takes_of,
)
from autumn_core.app.limits import Controlled
from autumn_core.app.unit import Unit, require_entity
from autumn_core.app.usage import (
    CheckArgs,
    _track_on_state,
    candidates,
    costs_of,
    known_feature,
    replace_rows,
    subject_balance,
)
from autumn_core.app.views import held_balance, live_rows
from autumn_core.control_state import LockState
from autumn_core.errors import Conflict, InvalidRequest, LockExpired, LockNotFound
from autumn_core.model import (
    ZERO,
    CustomerState,
    EventRecord,
    PendingRecord,
    RowState,
    with_control_state,
    with_rows_held,
)
from autumn_core.ports import StoreTransaction
from autumn_core.results import CheckResult, FinalizeResult
from autumn_core.rules.deduction import deduct
from autumn_core.rules.order import sees
from autumn_core.values import check_aware, check_metadata, check_text, to_decimal

#: Autumn's limit on how long a lock may hold; also the default (BC5).
MAX_LOCK = timedelta(hours=24)
LOCK_MODES = ("reject", "cap", "overflow")
ACTIONS = ("confirm", "release")
_STATUS = {"confirm": "confirmed", "release": "released"}


@attrs.define
class LockArgs:
    lock_id: str
    expires_at: datetime | None
    overage: str
    #: Runs of ``check_with_lock`` so far: the first claims the lock id by inserting its index
    #: record (the store refuses a taken id, and the call runs again); a run after that reads
    #: the index first.
    runs: int = 0


def validate_lock(value: Any) -> LockArgs | None:
    """Autumn's ``lock{lock_id, enabled, expires_at, overage_behavior}`` (None: no lock)."""
    if value is None:
        return None
    if type(value) is dict and len(value) == 1:
        # ``{"lock_id": ...}`` alone (most locks): the defaults for the rest.
        lock_id = value.get("lock_id")
        if type(lock_id) is str and 0 < len(lock_id) <= 256:
            return LockArgs(check_text(lock_id, "lock.lock_id"), None, "reject")
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"lock must be a dict like {{'lock_id': ...}}, got {value!r:.80}")
    if not _LOCK_KEY_SET.issuperset(value):
        unknown = sorted(str(k) for k in value if k not in LOCK_KEYS)
        raise InvalidRequest(f"lock takes {sorted(LOCK_KEYS)}, not {unknown}")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidRequest(f"lock.enabled must be true or false, got {enabled!r}")
    if not enabled:
        return None
    lock_id = value.get("lock_id")
    if lock_id is None:
        lock_id = f"lck_{os.urandom(12).hex()}"
    if not isinstance(lock_id, str) or not 1 <= len(lock_id) <= 256:
        raise InvalidRequest(f"lock.lock_id must be a string of 1-256 characters, got {lock_id!r}")
    check_text(lock_id, "lock.lock_id")
    expires = value.get("expires_at")
    expires_at = None if expires is None else check_aware(expires, "lock.expires_at")
    overage = value.get("overage_behavior", "reject")
    if overage not in LOCK_MODES:
        raise InvalidRequest(
            f"lock.overage_behavior must be one of {list(LOCK_MODES)}, got {overage!r}"
        )
    return LockArgs(lock_id, expires_at, overage)


LOCK_KEYS = ("lock_id", "enabled", "expires_at", "overage_behavior")
_LOCK_KEY_SET = frozenset(LOCK_KEYS)


def check_with_lock(unit: Unit, a: CheckArgs, lock: LockArgs) -> CheckResult:
    """BC5: decide and hold ``a.required`` under ``lock`` in one transaction."""
    ctx = unit.ctx
    f = a.feature
    if f.type == "boolean":
        raise InvalidRequest(f"a lock needs a metered feature; {f.id!r} is boolean")
    if a.required <= ZERO:
        raise InvalidRequest(f"a lock holds a positive amount, got required_balance {a.required}")
    now = unit.now
    latest = now + MAX_LOCK
    expires_at = lock.expires_at or latest
    if expires_at <= now or expires_at > latest:
        raise InvalidRequest(
            f"lock.expires_at must be after now and at most 24 hours ahead, got {expires_at}"
        )
    state = unit.get_or_create(a.customer, a.customer_data)
    entity_id = a.entity_id
    if entity_id is not None:
        require_entity(state, entity_id)
    lock.runs += 1
    if state.control_state.locks and state.control_state.lock(lock.lock_id) is not None:
        # Open on this customer: the index maps it here (it was written with the hold).
        return _again(unit, state, a, lock, state.pk)
    if lock.runs > 1:
        known = unit.tx.get_pending(lock_key(lock.lock_id))
        if known is not None:
            return _again(unit, state, a, lock, known.customer_pk)
    rows = live_rows(ctx, state, now)
    cands = candidates(ctx, rows, f.id, entity_id)
    ctl = Controlled.start(ctx, state, entity_id, now)
    if ctl is None:
        result = deduct(cands, a.required, lock.overage, now)
    else:
        result = ctl.deduct(f.id, cands, a.required, lock.overage, rows)
    short = result.remainder
    held = a.required - short
    if not cands or (short > ZERO and lock.overage == "reject") or held <= ZERO:
        return CheckResult(
            False,
            state.id,
            f.id,
            a.required,
            entity_id,
            subject_balance(ctx, state, f.id, entity_id, now),
        )
    before = state
    changed = result.changed
    counted: tuple[tuple[str, str | None, datetime, Decimal], ...] = ()
    if ctl is not None:
        counted = ctl.counted()
        state = ctl.finish(replace_rows(state, changed))
    # Positional: built on every reserve.
    record = LockState(
        lock.lock_id,
        f.id,
        entity_id,
        a.required,  # requested
        held,
        takes_of(cands, changed),
        now,  # created_at
        expires_at,
        lock.overage,
        {},  # properties
        counted,
    )
    if ctl is None:
        state = with_rows_held(state, changed, state.control_state.opened(record))
    else:
        state = with_control_state(state, state.control_state.opened(record))
    unit.put(state)
    index = index_record(state, record, "held", now)
    if lock.runs > 1:
        unit.tx.put_pending(index)
    else:
        unit.tx.insert_pending(index)  # a taken id: UniqueViolation, and the call runs again
    # A feature can only become blocked when a row reached zero, or under controls (BC6).
    low = ctl is not None
    for r in changed.values():
        if r.balance <= 0:
            low = True
    if low:
        touched = list(dict.fromkeys([f.id, *(c.row.feature_id for c in cands)]))
        signals.after_change(unit, before, state, entity_id, touched, candidates)
    # A deduction changes balances only, never which rows are live: the subject's rows of
    # the feature are the live ones, as changed.
    fid = f.id
    if entity_id is None:
        mine = [changed.get(r.id, r) for r in rows if r.feature_id == fid]
    else:
        mine = [changed.get(r.id, r) for r in rows if r.feature_id == fid and sees(r, entity_id)]
    return _held_result(unit, state, a, lock.lock_id, mine)


def _again(
    unit: Unit, state: CustomerState, a: CheckArgs, lock: LockArgs, owner_pk: str
) -> CheckResult:
    """A lock id checked again: the same hold answers again; anything else is a conflict."""
    held = state.control_state.lock(lock.lock_id) if owner_pk == state.pk else None
    if (
        held is None
        or held.feature_id != a.feature.id
        or held.entity_id != a.entity_id
        or held.requested != a.required
    ):
        raise Conflict(f"lock id {lock.lock_id!r} is already used")
    return _held_result(unit, state, a, lock.lock_id)


def _held_result(
    unit: Unit,
    state: CustomerState,
    a: CheckArgs,
    lock_id: str,
    mine: list[RowState] | None = None,
) -> CheckResult:
    """``mine``: the subject's live rows of the feature, when known."""
    f = a.feature
    balance = held_balance(unit.ctx, state, f.id, f.type, a.entity_id, unit.now, mine)
    if balance is None:
        # The hold drew on a credit system only: show the pool it drew from.
        lk = state.control_state.lock(lock_id)
        if lk is not None and lk.takes:
            balance = subject_balance(
                unit.ctx, state, lk.takes[0].feature_id, a.entity_id, unit.now
            )
    return CheckResult(True, state.id, f.id, a.required, a.entity_id, balance, lock_id)


# -- finalize ----------------------------------------------------------------------------------
@attrs.define  # built on every call and never shared: a mutable slotted init is cheapest
class FinalizeArgs:
    lock_id: str
    action: str
    override_value: Decimal | None
    properties: Mapping[str, Any]


def validate_finalize(
    lock_id: Any, action: Any, override_value: Any, properties: Any
) -> FinalizeArgs:
    if not isinstance(lock_id, str) or not 1 <= len(lock_id) <= 256:
        raise InvalidRequest(f"lock_id must be a string of 1-256 characters, got {lock_id!r}")
    check_text(lock_id, "lock_id")
    if action != "confirm" and action not in ACTIONS:
        raise InvalidRequest(f"action must be one of {list(ACTIONS)}, got {action!r}")
    value = None
    if override_value is not None:
        if action == "release":
            raise InvalidRequest("override_value cannot be given when action is release")
        value = to_decimal(override_value, "override_value")
        if value < ZERO:
            raise InvalidRequest(f"override_value must be >= 0, got {override_value!r}")
    props = {} if properties is None else check_metadata(properties, "properties")
    return FinalizeArgs(lock_id, action, value, props)


def finalize(unit: Unit, a: FinalizeArgs) -> FinalizeResult:
    """BC7: confirm (charge the final value) or release a hold, once."""
    ctx = unit.ctx
    key = f"lock:{a.lock_id}"  # lock_key
    tx = unit.tx
    both = _both_of(type(tx))
    first = tx.get_pending(key) if both is None else both(tx, key)
    if first is None:
        raise LockNotFound(f"lock {a.lock_id!r} does not exist")
    # Loaded for update: finalizers of it queue here.
    found = unit.find_pk_or_none(first.customer_pk)
    if found is None:
        raise LockNotFound(f"lock {a.lock_id!r} does not exist (its customer was deleted)")
    state = found
    lk = state.control_state.lock(a.lock_id)
    if lk is None:
        # Read the index again, now that the customer's lock is ours: a finalizer that ran
        # while this one waited has recorded what it did.
        record = unit.tx.get_pending(key)
        if record is None:
            raise LockNotFound(f"lock {a.lock_id!r} does not exist")
        payload = record.payload
        status = payload.get("status")
        if status == _STATUS[a.action]:
            return _replayed(unit, state, a, payload)
        if status in _STATUS.values():
            raise Conflict(f"lock {a.lock_id!r} was already {status}")
        # Expired, whether the index knows yet (lazy expiry in this very load) or not.
        raise LockExpired(f"lock {a.lock_id!r} expired at {payload.get('expires_at')}")
    now = unit.now
    value = ZERO
    settled = None
    if a.action == "confirm":
        value = lk.held if a.override_value is None else a.override_value
        if value <= lk.held:
            settled = keep_part(state, lk, value)
            if settled is None:  # a hold of credits: settled here only if all of it was spent
                settled = keep_spent(state, lk, value)
    props = {**lk.properties, **a.properties, "lock_id": a.lock_id}
    if settled is not None:
        # At or below the hold: keep that much of it, give the rest back; nothing new is
        # deducted, so no limit can be crossed (BC6).
        state = unit.put(settled)
        unit.events.append(
            EventRecord(
                unit.event_id(),
                state.pk,
                lk.entity_id,
                lk.feature_id,
                None,  # event_name
                value,
                props,
                now,  # timestamp
                now,  # created_at
            )
        )
    elif a.action == "release":
        state = unit.put(give_back(state, lk))
    else:
        before = state
        mode = "overflow" if lk.overage == "overflow" else "cap"
        if value > lk.held:
            # Above the hold: what it took stays spent (in the period it was taken in, were a
            # row reset since) and counted; only the rest is deducted.
            base = with_control_state(state, state.control_state.without(lk.id))
            deducted = value - lk.held
        else:
            # A hold of credits: given back whole (but what rows reset since spent) and the
            # value deducted afresh, as a track of it would (the same rounding).
            base, spent = give_back_unspent(state, lk, costs_of(ctx, lk.feature_id))
            deducted = max(ZERO, value - spent)
        _track_on_state(
            unit,
            base,
            [known_feature(ctx, lk.feature_id)],
            deducted,
            lk.entity_id,
            mode,
            props,
            now,
            event_name=None,
            signal_from=before,
            recorded=value,
        )
        state = unit.current(state.pk)
    payload = {**first.payload, "status": _STATUS[a.action], "value": str(value)}
    tx.put_pending(PendingRecord(first.key, first.customer_pk, first.kind, payload, now))
    # Positional: built on every finalize (lock_id, action, customer_id, feature_id,
    # entity_id, held, value).
    return FinalizeResult(
        a.lock_id, a.action, state.id, lk.feature_id, lk.entity_id, lk.held, value
    )


_BOTH: dict[type, Callable[[Any, str], PendingRecord | None] | None] = {}


def _both_of(kind: type) -> Callable[[Any, str], PendingRecord | None] | None:
    """The store's ``get_pending_locking_customer`` (``ports.PendingWithCustomer``), if any,
    looked up once per transaction class."""
    try:
        return _BOTH[kind]
    except KeyError:
        found = _BOTH[kind] = getattr(kind, "get_pending_locking_customer", None)
        return found


def _replayed(
    unit: Unit, state: CustomerState, a: FinalizeArgs, payload: Mapping[str, Any]
) -> FinalizeResult:
    fid = str(payload["feature_id"])
    entity_id = payload.get("entity_id")
    return FinalizeResult(
        lock_id=a.lock_id,
        action=a.action,
        customer_id=state.id,
        feature_id=fid,
        entity_id=entity_id,
        held=Decimal(str(payload.get("held", "0"))),
        value=Decimal(str(payload.get("value", "0"))),
        replayed=True,
    )


# -- forgetting --------------------------------------------------------------------------------
def forget_old(ctx: Context, now: datetime) -> int:
    """``process_due``: drop the index records of locks an hour past their expiry (settled or
    not; a hold still open that long is released by the customer's lazy work, which no longer
    records it), so the lock index holds at most a day and an hour of locks. Their ids may then
    be used again, and finalizing one is ``LockNotFound``, as with Autumn's lock receipts."""
    records = ctx.run(lambda tx: tx.list_pending(LOCK_KIND), write=False)
    old = [r.key for r in records if _forgettable(r, now)]
    for start in range(0, len(old), _FORGET_BATCH):
        batch = old[start : start + _FORGET_BATCH]

        def drop(tx: StoreTransaction, batch: list[str] = batch) -> None:
            for key in batch:
                record = tx.get_pending(key)  # read again: the id may have been used again
                if record is not None and _forgettable(record, now):
                    tx.delete_pending(key)

        ctx.run(drop, write=True)
    return len(old)


_FORGET_BATCH = 500


def _forgettable(record: PendingRecord, now: datetime) -> bool:
    expires = record.payload.get("expires_at")
    return isinstance(expires, str) and forget_at(datetime.fromisoformat(expires)) <= now
