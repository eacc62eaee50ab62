"""The Balance read model, derived from rows on every read (docs/rules.md 2.6). Never stored."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from autumn_core.model import ZERO, RowState
from autumn_core.results import Balance, BalanceRow, RolloverBalance
from autumn_core.values import arithmetic, in_engine


def released_seats(row: RowState) -> Decimal:
    if row.billing != "usage" or not row.allocated:
        return ZERO
    return max(ZERO, row.paid_seats - max(ZERO, row.usage - row.included))


def row_interval(row: RowState) -> str | None:
    """A row's reset interval as shown in ``Balance.interval``: "month", "3_day", or None."""
    if row.reset is None:
        return None
    return row.reset if row.reset_count == 1 else f"{row.reset_count}_{row.reset}"


def detached(balance: Balance) -> Balance:
    """A copy of a shared (memoized) Balance whose lists the caller may change freely."""
    copy = object.__new__(Balance)
    fields = balance.__dict__.copy()
    fields["breakdown"] = balance.breakdown.copy()
    fields["rollovers"] = balance.rollovers.copy()
    object.__setattr__(copy, "__dict__", fields)
    return copy


def balance_view(
    feature_id: str, feature_type: str, rows: Sequence[RowState], now: datetime
) -> Balance:
    """Sum the subject's live rows of one feature into its public Balance (sums of many large
    rows exceed Decimal's default 28 digits: they are made in the engine's context)."""
    if in_engine():  # called by a use case: its transaction set the context
        return _balance_view(feature_id, feature_type, rows, now)
    with arithmetic():
        return _balance_view(feature_id, feature_type, rows, now)


def _balance_view(
    feature_id: str, feature_type: str, rows: Sequence[RowState], now: datetime
) -> Balance:
    if feature_type == "boolean":
        return Balance(feature_id=feature_id, type="boolean")
    if len(rows) == 1:
        row = rows[0]
        if not row.unlimited and row.billing != "usage" and not row.rollovers:
            return _one_plain_row(feature_id, feature_type, row)
    return _summed(feature_id, feature_type, rows, now)


def _one_plain_row(feature_id: str, feature_type: str, row: RowState) -> Balance:
    """``_summed`` of one limited row that is not usage-billed and has no rollovers (what
    most tracks return), with the same arithmetic, so the same digits."""
    bal = row.balance
    granted = ZERO + row.granted
    balance_sum = ZERO + bal
    positive = bal > 0
    return Balance(
        feature_id,
        feature_type,
        False,
        granted,
        ZERO + bal if positive else ZERO,
        granted - balance_sum,
        ZERO if positive else ZERO - bal,
        False,
        None,
        row.next_reset_at,
        row_interval(row),
        [row.public],
        [],
    )


def _summed(feature_id: str, feature_type: str, rows: Sequence[RowState], now: datetime) -> Balance:
    granted = remaining = balance_sum = overage = unlimited_usage = ZERO
    unlimited = overage_allowed = False
    max_purchase: Decimal | None = ZERO
    any_usage = False
    next_reset: datetime | None = None
    intervals: set[str | None] = set()
    breakdown: list[BalanceRow] = []
    rollovers: list[RolloverBalance] = []
    for row in rows:
        if row.unlimited:
            unlimited = True
            unlimited_usage += row.unlimited_usage
        bal = row.balance
        granted += row.granted
        balance_sum += bal
        if bal > 0:
            remaining += bal
        else:
            overage -= bal
        usage_billed = row.billing == "usage"
        if usage_billed:
            overage_allowed = any_usage = True
            if row.allocated:
                remaining += released_seats(row)
            if row.max_purchase is None or max_purchase is None:
                max_purchase = None
            else:
                max_purchase += row.max_purchase
        nxt = row.next_reset_at
        if nxt is not None and (next_reset is None or nxt < next_reset):
            next_reset = nxt
        intervals.add(row_interval(row))
        for r in row.rollovers:
            if r.expires_at is not None and r.expires_at <= now:
                continue
            granted += r.amount
            remaining += r.balance
            balance_sum += r.balance
            rollovers.append(RolloverBalance(r.amount, r.balance, r.expires_at))
        breakdown.append(row.public)
    # The common interval; rows that differ (a non-resetting one included) give "multiple".
    interval = intervals.pop() if len(intervals) == 1 else ("multiple" if intervals else None)
    if unlimited:
        return Balance(
            feature_id=feature_id,
            type=feature_type,
            unlimited=True,
            usage=unlimited_usage,
            overage_allowed=overage_allowed,
            max_purchase=max_purchase if any_usage else None,
            next_reset_at=next_reset,
            interval=interval,
            breakdown=breakdown,
            rollovers=rollovers,
        )
    return Balance(
        feature_id=feature_id,
        type=feature_type,
        granted=granted,
        remaining=remaining,
        usage=granted - balance_sum,
        overage=overage,
        overage_allowed=overage_allowed,
        max_purchase=max_purchase if any_usage else None,
        next_reset_at=next_reset,
        interval=interval,
        breakdown=breakdown,
        rollovers=rollovers,
    )
