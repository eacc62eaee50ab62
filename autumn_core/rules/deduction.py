"""The deduction engine: rows and a value in, new rows out (docs/rules.md §10-12, R5-R9, D5, B2).

Pure: no store, no clock (``now`` is passed in for rollover expiry). The caller picks the
candidate rows and orders them (``rules.order``); this module only moves balances.

Units. The tracked value is in units of the tracked feature; a candidate of cost ``c`` takes
``units x c`` of its own unit (credits for a credit-system row, CS1). What is still to deduct is
carried in the unit of the last row it was measured against and converted only when the cost
changes, so a member drained across pools of one cost stays exact (no ``1/3`` round trips).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import attrs

from autumn_core.model import ZERO, RolloverState, RowState, replace, with_balance
from autumn_core.values import arithmetic, in_engine

ONE = Decimal(1)
_NEG_INF = Decimal("-Infinity")
_NEVER = datetime.max.replace(tzinfo=UTC)


@attrs.frozen
class Candidate:
    """A row considered for a deduction, with its cost per unit of the tracked feature."""

    row: RowState
    cost: Decimal


@attrs.define
class Deduction:
    """What a deduction did: the rows it changed (by id) and what was applied per feature."""

    changed: dict[str, RowState]
    #: Per feature, in that feature's own units (credits for a credit system); < 0 for refunds.
    applied: dict[str, Decimal]
    #: What was left over, in units of the tracked feature (0 when everything fit).
    remainder: Decimal
    absorbed_by_unlimited: bool = False


def pass2_floor(row: RowState, mode: str, first: bool) -> Decimal | None:
    """How low pass 2 may push a row; None when the row takes no part in pass 2 (R8).

    - ``overflow``: the first row in order takes the rest, with no floor.
    - usage-billed rows: ``-max_purchase``, or unbounded.
    - free allocated rows: unbounded under ``cap``, 0 (no part) under ``reject`` (D11).
    - every other row (free metered, prepaid, grants of metered features): 0.
    """
    if mode == "overflow":
        return _NEG_INF if first else None
    if row.billing == "usage":
        return _NEG_INF if row.max_purchase is None else -row.max_purchase
    if row.allocated and row.billing is None:
        return None if mode == "reject" else _NEG_INF
    return None


def deduct(
    candidates: Sequence[Candidate],
    value: Decimal,
    mode: str,
    now: datetime,
    *,
    dry_run: bool = False,
) -> Deduction:
    """Deduct ``value`` units (negative: refund) over the ordered candidate rows.

    ``mode`` is "cap", "reject" or "overflow"; the caller decides what a remainder means (R9).
    ``dry_run`` computes ``applied`` and ``remainder`` only, building no new rows (check, K3).
    """
    if not in_engine():  # a use case's transaction set the context already
        with arithmetic():
            return deduct(candidates, value, mode, now, dry_run=dry_run)
    if value >= 0:
        return _deduct(candidates, value, mode, now, dry_run)
    return _refund(candidates, -value, dry_run)


def fits(candidates: Sequence[Candidate], value: Decimal, now: datetime) -> bool:
    """Whether ``deduct(candidates, value, "reject", now).remainder == 0``, without deducting.

    Under "reject" every row can give a fixed amount (live rollovers, its positive balance,
    then its pass-2 room down to its floor) whatever the order, so the decision is a sum
    (K3 d). Only rows at cost 1 take this path; credit pools go through ``deduct`` so their
    unit conversions stay exactly as the real deduction does them.
    """
    return fits_within(capacity(candidates, now), candidates, value, now)


#: ``capacity`` of rows that take any value (an unlimited row, a row with no floor).
UNBOUNDED = Decimal("Infinity")


def capacity(candidates: Sequence[Candidate], now: datetime) -> Decimal | None:
    """What ``fits`` sums, independent of the value: the most a reject-mode deduction can take
    (``UNBOUNDED`` for no limit), or None when a credit pool makes the decision a dry run.

    It depends on ``now`` only through rollover expiries, so it can be computed once per
    memo window of a customer state (``app.views.memoized``).
    """
    total = ZERO
    for c in candidates:
        if c.cost != ONE:
            return None
        room = row_room(c.row, now)
        if room.is_infinite():
            return UNBOUNDED
        total += room
    return total


def row_room(row: RowState, now: datetime) -> Decimal:
    """What one row can still give a reject-mode deduction, in its own unit: its live
    rollovers, its positive balance, then its pass-2 room down to its floor (``UNBOUNDED``
    for an unlimited row or a row with no floor)."""
    if row.unlimited:
        return UNBOUNDED
    room = ZERO
    for r in row.rollovers:
        if r.balance > 0 and (r.expires_at is None or r.expires_at > now):
            room += r.balance
    if row.balance > 0:
        room += row.balance
    floor = pass2_floor(row, "reject", False)
    if floor is not None:
        if floor == _NEG_INF:
            return UNBOUNDED
        room += max(ZERO, min(row.balance, ZERO) - floor)
    return room


def fits_within(
    room: Decimal | None, candidates: Sequence[Candidate], value: Decimal, now: datetime
) -> bool:
    """``fits`` given ``room = capacity(candidates, now)``."""
    if value <= 0:
        return True
    if room is None:
        return deduct(candidates, value, "reject", now, dry_run=True).remainder == 0
    return value <= room


def _zero_applied(candidates: Sequence[Candidate]) -> dict[str, Decimal]:
    return {c.row.feature_id: ZERO for c in candidates}


def _unlimited(candidates: Sequence[Candidate]) -> Candidate | None:
    for c in candidates:
        if c.row.unlimited:
            return c
    return None


def _absorb(
    sink: Candidate, amount: Decimal, applied: dict[str, Decimal], dry_run: bool
) -> Deduction:
    """R5: the unlimited row counts ``amount`` (its own units; < 0 gives usage back)."""
    row = sink.row
    applied[row.feature_id] += amount
    changed = (
        {} if dry_run else {row.id: replace(row, unlimited_usage=row.unlimited_usage + amount)}
    )
    return Deduction(changed, applied, ZERO, absorbed_by_unlimited=True)


def _deduct(
    candidates: Sequence[Candidate], value: Decimal, mode: str, now: datetime, dry_run: bool
) -> Deduction:
    if len(candidates) == 1 and value > 0:
        # Most tracks: one row of the feature that holds the value. R7's pass 1 takes it all
        # from that row, with the same arithmetic as the general path below.
        only = candidates[0]
        row = only.row
        bal = row.balance
        if bal >= value and only.cost == ONE and not row.unlimited and not row.rollovers:
            moved = {} if dry_run else {row.id: with_balance(row, bal - value)}
            return Deduction(moved, {row.feature_id: ZERO + value}, ZERO)
    # One pass over the candidates sets up everything below.
    applied: dict[str, Decimal] = {}
    balances: dict[str, Decimal] = {}
    sink: Candidate | None = None
    any_rollovers = False
    for c in candidates:
        row = c.row
        applied[row.feature_id] = ZERO
        balances[row.id] = row.balance
        if row.unlimited and sink is None:
            sink = c
        if row.rollovers:
            any_rollovers = True
    if value == 0 or not candidates:
        return Deduction({}, applied, value)

    if sink is not None:  # R5: the unlimited row absorbs everything, as a usage counter.
        return _absorb(sink, value * sink.cost, applied, dry_run)

    need, need_cost = value, ONE  # what is left, in units of cost ``need_cost``

    # R6, RO4: rollovers first, soonest expiry first (None last), over every row.
    rollover_left: dict[str, list[Decimal]] = {}
    if any_rollovers:
        pool: list[tuple[bool, datetime, int, int, Candidate]] = []
        for idx, c in enumerate(candidates):
            for ridx, r in enumerate(c.row.rollovers):
                if r.balance > 0 and (r.expires_at is None or r.expires_at > now):
                    pool.append((r.expires_at is None, r.expires_at or _NEVER, idx, ridx, c))
        pool.sort(key=lambda t: t[:4])
        for _, _, _, ridx, c in pool:
            if c.cost != need_cost:
                need, need_cost = need * c.cost / need_cost, c.cost
            left = rollover_left.setdefault(c.row.id, [r.balance for r in c.row.rollovers])
            take = min(need, left[ridx])
            left[ridx] -= take
            need -= take
            applied[c.row.feature_id] += take
            if need <= 0:
                break

    # R7 pass 1: take what each row has, never below zero.
    if need > 0:
        for c in candidates:
            bal = balances[c.row.id]
            if bal <= 0:
                continue
            if c.cost != need_cost:
                need, need_cost = need * c.cost / need_cost, c.cost
            take = min(need, bal)
            balances[c.row.id] = bal - take
            need -= take
            applied[c.row.feature_id] += take
            if need <= 0:
                break

    # R8 pass 2: only rows that allow it go negative, down to their floor.
    if need > 0:
        for i, c in enumerate(candidates):
            floor = pass2_floor(c.row, mode, i == 0)
            if floor is None:
                continue
            bal = balances[c.row.id]
            room = bal - floor
            if room <= 0:
                continue
            if c.cost != need_cost:
                need, need_cost = need * c.cost / need_cost, c.cost
            take = min(need, room)
            balances[c.row.id] = bal - take
            need -= take
            applied[c.row.feature_id] += take
            if need <= 0:
                break

    remainder = ZERO if need <= 0 else need / need_cost
    if dry_run:
        return Deduction({}, applied, remainder)
    changed: dict[str, RowState] = {}
    for c in candidates:
        row = c.row
        new_bal = balances[row.id]
        spent = rollover_left.get(row.id)
        if spent is not None:
            rollovers = tuple(
                r
                if r.balance == b
                else RolloverState(r.id, r.amount, b, r.expires_at, r.created_at)
                for r, b in zip(row.rollovers, spent, strict=True)
            )
            changed[row.id] = replace(row, balance=new_bal, rollovers=rollovers)
        elif new_bal != row.balance:
            changed[row.id] = with_balance(row, new_bal)
    return Deduction(changed, applied, remainder)


def _refund(candidates: Sequence[Candidate], amount: Decimal, dry_run: bool) -> Deduction:
    """D5: lift negative rows to 0 in order, then refill up to ``granted``; the excess is dropped.

    Rollovers are never refilled (R6). An unlimited row gives back from its usage counter (R5).
    """
    applied = _zero_applied(candidates)
    if not candidates:
        return Deduction({}, applied, amount)
    sink = _unlimited(candidates)
    if sink is not None:
        return _absorb(sink, -min(amount * sink.cost, sink.row.unlimited_usage), applied, dry_run)
    need, need_cost = amount, ONE
    balances = {c.row.id: c.row.balance for c in candidates}
    for refill in (False, True):
        for c in candidates:
            bal = balances[c.row.id]
            room = (c.row.granted if refill else ZERO) - bal
            if room <= 0:
                continue
            if c.cost != need_cost:
                need, need_cost = need * c.cost / need_cost, c.cost
            give = min(need, room)
            balances[c.row.id] = bal + give
            need -= give
            applied[c.row.feature_id] -= give
            if need <= 0:
                break
        if need <= 0:
            break
    remainder = ZERO if need <= 0 else need / need_cost
    if dry_run:
        return Deduction({}, applied, remainder)
    changed = {
        c.row.id: replace(c.row, balance=balances[c.row.id])
        for c in candidates
        if balances[c.row.id] != c.row.balance
    }
    return Deduction(changed, applied, remainder)


def shift_total(
    candidates: Sequence[Candidate], delta: Decimal, now: datetime | None = None
) -> dict[str, RowState]:
    """``balances.set``: move the subject's total by ``-delta`` with no floors or ceilings (B2).

    A positive delta drains rollovers (soonest expiry first, as R6), then rows to 0 in order,
    then pushes the first row negative; a negative delta lifts negative rows to 0 in order,
    then adds the rest to the first row (which may end above ``granted``). Costs are ignored:
    the candidates are the feature's own rows. Rollovers expired by ``now`` are left alone.
    """
    if not candidates or delta == 0:
        return {}
    rows = {c.row.id: c.row for c in candidates}
    order = [c.row.id for c in candidates]
    with arithmetic():
        if delta > 0:
            need = _drain_rollovers(rows, order, delta, now)
            for rid in order:
                if need <= 0:
                    break
                row = rows[rid]
                take = min(need, max(row.balance, ZERO))
                if take > 0:
                    rows[rid] = attrs.evolve(row, balance=row.balance - take)
                    need -= take
            if need > 0:
                first = rows[order[0]]
                rows[order[0]] = attrs.evolve(first, balance=first.balance - need)
        else:
            give = -delta
            for rid in order:
                if give <= 0:
                    break
                row = rows[rid]
                if row.balance < 0:
                    lift = min(give, -row.balance)
                    rows[rid] = attrs.evolve(row, balance=row.balance + lift)
                    give -= lift
            if give > 0:
                first = rows[order[0]]
                rows[order[0]] = attrs.evolve(first, balance=first.balance + give)
    return {c.row.id: rows[c.row.id] for c in candidates if rows[c.row.id] is not c.row}


def _drain_rollovers(
    rows: dict[str, RowState], order: list[str], need: Decimal, now: datetime | None
) -> Decimal:
    pool: list[tuple[bool, datetime, int, int]] = []
    for idx, rid in enumerate(order):
        for ridx, r in enumerate(rows[rid].rollovers):
            if r.balance > 0 and (now is None or r.expires_at is None or r.expires_at > now):
                pool.append((r.expires_at is None, r.expires_at or _NEVER, idx, ridx))
    if not pool:
        return need
    pool.sort()
    left: dict[int, list[RolloverState]] = {}
    for _, _, idx, ridx in pool:
        if need <= 0:
            break
        rolls = left.setdefault(idx, list(rows[order[idx]].rollovers))
        r = rolls[ridx]
        take = min(need, r.balance)
        rolls[ridx] = attrs.evolve(r, balance=r.balance - take)
        need -= take
    for idx, rolls in left.items():
        rid = order[idx]
        rows[rid] = attrs.evolve(rows[rid], rollovers=tuple(rolls))
    return need
