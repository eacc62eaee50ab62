"""Period arithmetic: reset boundaries and periods, always counted from an anchor (D6, S2)."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

_FIXED = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}
_MONTHS = {"month": 1, "quarter": 3, "semi_annual": 6, "year": 12}

#: Nominal lengths for ordering rows by reset interval (O5).
NOMINAL_SECONDS = {
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "quarter": 90 * 86400,
    "semi_annual": 180 * 86400,
    "year": 365 * 86400,
}


def add_months(dt: datetime, months: int) -> datetime:
    """Calendar months with the day clamped to the month's end (Jan 31 + 1 -> Feb 28/29)."""
    total = dt.month - 1 + months
    year, month = dt.year + total // 12, total % 12 + 1
    day = min(dt.day, calendar.monthrange(year, month)[1])
    return dt.replace(year=year, month=month, day=day)


def next_boundary(anchor: datetime, interval: str, count: int, now: datetime) -> datetime:
    """The first anchor + k * interval * count strictly after now (k >= 1 when anchor <= now)."""
    if anchor > now:
        return anchor
    if interval in _FIXED:
        step = _FIXED[interval] * count
        k = (now - anchor) // step + 1
        return anchor + step * k
    months = _MONTHS[interval] * count
    # Start from the calendar months elapsed: anchor + (k - 1) steps then falls in a calendar
    # month before now's, so it is never after now, and only stepping forward remains.
    elapsed = (now.year - anchor.year) * 12 + (now.month - anchor.month)
    k = max(1, elapsed // months)
    while add_months(anchor, months * k) <= now:
        k += 1
    return add_months(anchor, months * k)


def previous_boundary(anchor: datetime, interval: str, count: int, now: datetime) -> datetime:
    """The last anchor + k * interval * count at or before now (the current period's start)."""
    nxt = next_boundary(anchor, interval, count, now)
    if nxt == anchor:
        return anchor
    if interval in _FIXED:
        return nxt - _FIXED[interval] * count
    months = _MONTHS[interval] * count
    # Recompute from the anchor instead of stepping back from nxt, to keep month-end clamping exact.
    k = 0
    while add_months(anchor, months * (k + 1)) <= now:
        k += 1
    return add_months(anchor, months * k)


def trial_end(start: datetime, length: int, duration: str) -> datetime:
    if duration == "day":
        return start + timedelta(days=length)
    if duration == "week":
        return start + timedelta(weeks=length)
    if duration == "month":
        return add_months(start, length)
    if duration == "year":
        return add_months(start, 12 * length)
    raise ValueError(f"unknown trial duration {duration!r}")
