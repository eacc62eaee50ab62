"""The deduction engine: rows and a value in, new rows out (DOMAIN.md §10-12, R5-R9, D5).

Pure: no store, no clock (``now`` is passed in for rollover expiry). The caller picks the
candidate rows and orders them (``rules.order``); this module only moves balances.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, localcontext

import attrs

from autumn_core.model import ZERO, RowState

_NEG_INF = Decimal("-Infinity")
_FAR = datetime.max.replace(tzinfo=None)


@attrs.frozen
class Candidate:
    """A row considered for a deduction, with its cost per unit of the tracked feature."""

    row: RowState
    cost: Decimal


@attrs.define
class Deduction:
    """What a deduction did: the rows it changed (by id) and what was applied per feature."""

    changed: dict[str, RowState]
    applied: dict[str, Decimal]
    #: What was left over, in units of the tracked feature (0 when everything fit).
    remainder: Decimal
    absorbed_by_unlimited: bool = False


def _floor(row: RowState, mode: str, first: bool) -> Decimal | None:
    """How low pass 2 may push a row; None when the row takes no part in pass 2 (R8)."""
    if mode == "overflow":
        return _NEG_INF if first else None
    if row.billing == "usage":
        return _NEG_INF if row.max_purchase is None else -row.max_purchase
    if row.allocated and row.billing is None:
        return None if mode == "reject" else _NEG_INF
    return None


def deduct(candidates: Sequence[Candidate], value: Decimal, mode: str, now: datetime) -> Deduction:
    """Deduct ``value`` units (negative: refund) over the ordered candidate rows.

    ``mode`` is "cap", "reject" or "overflow"; the caller decides what a remainder means.
    """
    with localcontext() as ctx:
        ctx.prec = 50
        if value >= 0:
            result = _deduct(candidates, value, mode, now)
        else:
            result = _refund(candidates, -value)
    return result


def _deduct(candidates: Sequence[Candidate], value: Decimal, mode: str, now: datetime) -> Deduction:
    changed: dict[str, RowState] = {}
    applied: dict[str, Decimal] = {}
    for c in candidates:
        applied.setdefault(c.row.feature_id, ZERO)
    if value == 0:
        return Deduction(changed, applied, ZERO)

    for c in candidates:
        if c.row.unlimited:
            row = c.row
            changed[row.id] = attrs.evolve(
                row, unlimited_usage=row.unlimited_usage + value * c.cost
            )
            applied[row.feature_id] += value * c.cost
            return Deduction(changed, applied, ZERO, absorbed_by_unlimited=True)

    need = value
    balances = {c.row.id: c.row.balance for c in candidates}

    # Rollovers first, soonest expiry first (R6, RO4).
    pool: list[tuple[datetime, int, int, Candidate]] = []
    for idx, c in enumerate(candidates):
        for ridx, r in enumerate(c.row.rollovers):
            if r.balance > 0 and (r.expires_at is None or r.expires_at > now):
                key = r.expires_at.replace(tzinfo=None) if r.expires_at else _FAR
                pool.append((key, idx, ridx, c))
    rollover_left: dict[str, list[Decimal]] = {}
    if pool:
        pool.sort(key=lambda t: (t[0], t[1], t[2]))
        for _, _, ridx, c in pool:
            if need <= 0:
                break
            left = rollover_left.setdefault(c.row.id, [r.balance for r in c.row.rollovers])
            take = min(need * c.cost, left[ridx])
            left[ridx] -= take
            need -= take / c.cost
            applied[c.row.feature_id] += take

    # Pass 1: never below zero (R7).
    if need > 0:
        for c in candidates:
            bal = balances[c.row.id]
            if bal <= 0:
                continue
            take = min(need * c.cost, bal)
            balances[c.row.id] = bal - take
            need -= take / c.cost
            applied[c.row.feature_id] += take
            if need <= 0:
                break

    # Pass 2: only rows that allow it go negative, down to their floor (R8).
    if need > 0:
        for i, c in enumerate(candidates):
            floor = _floor(c.row, mode, i == 0)
            if floor is None:
                continue
            bal = balances[c.row.id]
            room = bal - floor
            if room <= 0:
                continue
            take = min(need * c.cost, room)
            balances[c.row.id] = bal - take
            need -= take / c.cost
            applied[c.row.feature_id] += take
            if need <= 0:
                break

    for c in candidates:
        row = c.row
        new_bal = balances[row.id]
        left = rollover_left.get(row.id)
        if new_bal != row.balance or left is not None:
            rollovers = row.rollovers
            if left is not None:
                rollovers = tuple(
                    attrs.evolve(r, balance=b) if r.balance != b else r
                    for r, b in zip(row.rollovers, left, strict=True)
                )
            changed[row.id] = attrs.evolve(row, balance=new_bal, rollovers=rollovers)
    return Deduction(changed, applied, max(need, ZERO))


def _refund(candidates: Sequence[Candidate], amount: Decimal) -> Deduction:
    """Refunds lift negative rows to 0, then refill up to ``granted``; the excess is dropped (D5)."""
    changed: dict[str, RowState] = {}
    applied: dict[str, Decimal] = {}
    for c in candidates:
        applied.setdefault(c.row.feature_id, ZERO)
    for c in candidates:
        if c.row.unlimited:
            row = c.row
            give = min(amount * c.cost, row.unlimited_usage)
            changed[row.id] = attrs.evolve(row, unlimited_usage=row.unlimited_usage - give)
            applied[row.feature_id] -= give
            return Deduction(changed, applied, ZERO, absorbed_by_unlimited=True)
    need = amount
    balances = {c.row.id: c.row.balance for c in candidates}
    for ceiling_pass in (False, True):
        for c in candidates:
            if need <= 0:
                break
            bal = balances[c.row.id]
            top = c.row.granted if ceiling_pass else ZERO
            room = top - bal
            if room <= 0:
                continue
            give = min(need * c.cost, room)
            balances[c.row.id] = bal + give
            need -= give / c.cost
            applied[c.row.feature_id] -= give
    for c in candidates:
        if balances[c.row.id] != c.row.balance:
            changed[c.row.id] = attrs.evolve(c.row, balance=balances[c.row.id])
    return Deduction(changed, applied, max(need, ZERO))


def shift_total(candidates: Sequence[Candidate], delta: Decimal) -> dict[str, RowState]:
    """``balances.set``: move the subject's total by ``-delta`` with no floors or ceilings (B2).

    A positive delta drains rollovers, then rows to 0 in order, then pushes the first row
    negative; a negative delta lifts negative rows to 0, then adds the rest to the first row.
    """
    changed: dict[str, RowState] = {}
    if not candidates or delta == 0:
        return changed
    rows = {c.row.id: c.row for c in candidates}
    order = [c.row.id for c in candidates]
    if delta > 0:
        need = delta
        for rid in order:
            row = rows[rid]
            if not row.rollovers or need <= 0:
                continue
            new_rolls = []
            for r in sorted(row.rollovers, key=lambda r: (r.expires_at is None, r.expires_at)):
                take = min(need, r.balance)
                need -= take
                new_rolls.append(attrs.evolve(r, balance=r.balance - take))
            rows[rid] = attrs.evolve(row, rollovers=tuple(new_rolls))
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
    for rid in order:
        if rows[rid] is not candidates[order.index(rid)].row:
            changed[rid] = rows[rid]
    return changed
