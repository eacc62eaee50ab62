"""Billing controls as pure rules: overage switches and spend limits as row floors, usage
windows, what blocks a feature, and alert thresholds (docs/rules.md BC2-BC4, BC6).

Pure functions of rows, controls and ``now``. The app layer picks which controls apply to a
subject (``app/limits.py``) and stores the window counters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import attrs

from autumn_core.controls import HUNDRED, SpendLimit, UsageAlert, UsageLimit
from autumn_core.model import ZERO, RowState, replace
from autumn_core.rules.deduction import Candidate, Deduction, row_room
from autumn_core.rules.periods import add_months, next_boundary, previous_boundary

_NEG_INF = Decimal("-Infinity")
INFINITE = Decimal("Infinity")
_FIXED = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


# -- overage switches and spend limits (BC2) -----------------------------------------------
@attrs.frozen
class FeatureRule:
    """The overage controls that apply to one feature for one subject."""

    #: ``overage_allowed``: True / False overrides the plan; None keeps it.
    overage: bool | None = None
    #: An enabled spend limit with an ``overage_limit``.
    spend: SpendLimit | None = None


def spend_cap(rule: FeatureRule, rows: Sequence[RowState]) -> Decimal | None:
    """The overage a spend limit allows, in feature units (``usage_percentage``: of granted)."""
    spend = rule.spend
    if spend is None or spend.overage_limit is None:
        return None
    if spend.limit_type == "usage_percentage":
        granted = sum((r.granted for r in rows), ZERO)
        return spend.overage_limit * granted / HUNDRED
    return spend.overage_limit


def governed(cands: Sequence[Candidate], rules: Mapping[str, FeatureRule]) -> list[Candidate]:
    """The candidates with each row's overage floor set by the controls (BC2).

    ``overage_allowed`` decides whether a row may go below zero at all (overriding the plan's
    pricing); an enabled spend limit caps the overage of the feature's rows together, taking
    precedence over ``max_purchase``: the first row in order gets what room is left, the
    others only the overage they already have. Only ``billing``/``max_purchase`` change, and
    ``restore`` puts the original rows back after the deduction.
    """
    out = list(cands)
    by_feature: dict[str, list[int]] = {}
    for i, c in enumerate(out):
        if c.row.feature_id in rules and not c.row.unlimited:
            by_feature.setdefault(c.row.feature_id, []).append(i)
    for fid, idxs in by_feature.items():
        rule = rules[fid]
        rows = [out[i].row for i in idxs]
        cap = spend_cap(rule, rows)
        allowing = []
        for i in idxs:
            row = out[i].row
            allows = rule.overage if rule.overage is not None else row.billing == "usage"
            if not allows:
                # "prepaid" has no pass-2 room whatever the mode (a free allocated row would).
                out[i] = Candidate(replace(row, billing="prepaid", allocated=False), out[i].cost)
            elif cap is not None or row.billing != "usage":
                allowing.append(i)
        if cap is None:
            for i in allowing:
                row = replace(out[i].row, billing="usage", max_purchase=None)
                out[i] = Candidate(row, out[i].cost)
            continue
        overage_now = sum((max(ZERO, -out[i].row.balance) for i in allowing), ZERO)
        room = max(ZERO, cap - overage_now)
        for n, i in enumerate(allowing):
            row = out[i].row
            floor = max(ZERO, -row.balance) + (room if n == 0 else ZERO)
            out[i] = Candidate(replace(row, billing="usage", max_purchase=floor), out[i].cost)
    return out


def restore(result: Deduction, originals: Mapping[str, RowState]) -> Deduction:
    """``result`` of a deduction over governed rows, its changed rows made from the originals."""
    if not result.changed:
        return result
    changed = {
        rid: replace(originals[rid], balance=new.balance, rollovers=new.rollovers)
        for rid, new in result.changed.items()
    }
    return Deduction(changed, result.applied, result.remainder, result.absorbed_by_unlimited)


def capacity(cands: Sequence[Candidate], now: datetime) -> Decimal:
    """What can still be deducted under "reject", in units of the tracked feature (may be
    infinite): each row's room (``row_room``) converted at its cost."""
    total = ZERO
    for c in cands:
        room = row_room(c.row, now)
        if room.is_infinite():
            return INFINITE
        total += room / c.cost
    return total


def block_reason(
    cands: Sequence[Candidate], rules: Mapping[str, FeatureRule], now: datetime
) -> str | None:
    """Autumn's ``limit_type`` when nothing more can be used (BC6), else None:
    ``spend_limit``, ``max_purchase`` or ``included`` (the balance is exhausted)."""
    if not cands or capacity(cands, now) > 0:
        return None
    if any(
        rules.get(c.row.feature_id, FeatureRule()).spend is not None and c.row.billing == "usage"
        for c in cands
    ):
        return "spend_limit"
    if any(c.row.billing == "usage" and c.row.max_purchase is not None for c in cands):
        return "max_purchase"
    return "included"


# -- usage windows (BC3) ---------------------------------------------------------------------
def window_bounds(
    limit: UsageLimit, billing_anchor: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The window of ``limit`` that contains ``now``.

    ``billing_cycle``: windows of the interval phased to the feature's reset anchor (the
    customer's billing cycle); ``utc``, or no anchor yet, or one in the future: calendar
    windows in UTC (hours, days from midnight, weeks from Monday, months from the 1st, years
    from January 1st).
    """
    interval = limit.interval
    if limit.anchor == "billing_cycle" and billing_anchor is not None and billing_anchor <= now:
        return (
            previous_boundary(billing_anchor, interval, 1, now),
            next_boundary(billing_anchor, interval, 1, now),
        )
    if interval == "hour":
        start = now.replace(minute=0, second=0, microsecond=0)
    else:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if interval == "week":
            start -= timedelta(days=start.weekday())
        elif interval == "month":
            start = start.replace(day=1)
        elif interval == "year":
            start = start.replace(month=1, day=1)
    if interval in _FIXED:
        return start, start + _FIXED[interval]
    return start, add_months(start, 1 if interval == "month" else 12)


# -- usage alerts (BC4) ----------------------------------------------------------------------
@attrs.frozen
class AlertFigures:
    """What an alert compares: usage and the basis (100 %) it is measured against."""

    usage: Decimal
    remaining: Decimal
    basis: Decimal


def alert_raised(alert: UsageAlert, figures: AlertFigures) -> bool:
    """Whether the alert's condition holds (it fires when this turns true, BC4)."""
    t = alert.threshold
    kind = alert.threshold_type
    if kind == "usage":
        return figures.usage >= t
    if kind == "remaining":
        return figures.remaining <= t
    if figures.basis <= 0:
        return False
    if kind == "usage_percentage":
        return figures.usage * HUNDRED >= t * figures.basis
    return figures.remaining * HUNDRED <= t * figures.basis


__all__ = [
    "INFINITE",
    "AlertFigures",
    "FeatureRule",
    "alert_raised",
    "block_reason",
    "capacity",
    "governed",
    "restore",
    "spend_cap",
    "window_bounds",
]
