"""Usage over time: tracked events summed (or counted) per time bin, per feature (R16).

A pure function of the events, the bins and the features' event names. Bins are aligned in
UTC: an hour, a day, a week starting on Monday, a calendar month. Every bin from the one
holding ``start`` to the one holding ``end`` is listed, with zeros where nothing was tracked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from autumn_core.model import ZERO, EventRecord
from autumn_core.results import EventAggregate, EventBin, EventTotal

BIN_SIZES = ("hour", "day", "week", "month")
#: Groups beyond this many (largest totals first) are summed under ``OTHER``.
DEFAULT_MAX_GROUPS = 9
OTHER = "Other"


def bin_start(t: datetime, size: str) -> datetime:
    if size == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if size == "day":
        return day
    if size == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_bin(t: datetime, size: str) -> datetime:
    if size == "hour":
        return t + timedelta(hours=1)
    if size == "day":
        return t + timedelta(days=1)
    if size == "week":
        return t + timedelta(days=7)
    return t.replace(year=t.year + 1, month=1) if t.month == 12 else t.replace(month=t.month + 1)


def features_of(
    event: EventRecord, feature_ids: Sequence[str], event_names: Mapping[str, Sequence[str]]
) -> list[str]:
    """The asked features an event counts for: its own feature, or those listening to its name."""
    if event.feature_id is not None:
        return [event.feature_id] if event.feature_id in feature_ids else []
    name = event.event_name
    return [f for f in feature_ids if name is not None and name in event_names.get(f, ())]


def group_of(event: EventRecord, group_by: str, customer_id: str | None) -> str:
    if group_by == "$entity_id":
        return event.entity_id or ""
    if group_by == "$customer_id":
        return customer_id or ""
    key = group_by.removeprefix("properties.")
    value: Any = event.properties.get(key)
    return "" if value is None else str(value)


def aggregate(
    events: Iterable[EventRecord],
    feature_ids: Sequence[str],
    *,
    start: datetime,
    end: datetime,
    bin_size: str,
    event_names: Mapping[str, Sequence[str]],
    count: bool = False,
    group_by: str | None = None,
    customer_id: str | None = None,
    max_groups: int = DEFAULT_MAX_GROUPS,
) -> EventAggregate:
    """Events in ``[start, end)`` binned; ``count`` counts events instead of adding values."""
    periods: list[datetime] = []
    t = bin_start(start, bin_size)
    while t < end:
        periods.append(t)
        t = next_bin(t, bin_size)
    index = {p: i for i, p in enumerate(periods)}
    values = [{f: ZERO for f in feature_ids} for _ in periods]
    grouped: list[dict[str, dict[str, Decimal]]] = [{f: {} for f in feature_ids} for _ in periods]
    totals = {f: EventTotal(0, ZERO) for f in feature_ids}
    group_totals: dict[str, dict[str, Decimal]] = {f: {} for f in feature_ids}
    for ev in events:
        if not start <= ev.timestamp < end:
            continue
        i = index.get(bin_start(ev.timestamp, bin_size))
        if i is None:
            continue
        amount = Decimal(1) if count else ev.value
        for f in features_of(ev, feature_ids, event_names):
            values[i][f] += amount
            t0 = totals[f]
            totals[f] = EventTotal(t0.count + 1, t0.sum + ev.value)
            if group_by is not None:
                g = group_of(ev, group_by, customer_id)
                grouped[i][f][g] = grouped[i][f].get(g, ZERO) + amount
                group_totals[f][g] = group_totals[f].get(g, ZERO) + amount
    if group_by is None:
        return EventAggregate(
            [EventBin(p, v) for p, v in zip(periods, values, strict=True)], totals
        )
    kept = {
        f: set(sorted(gs, key=lambda g: (-gs[g], g))[:max_groups]) for f, gs in group_totals.items()
    }
    bins = []
    for p, v, by_feature in zip(periods, values, grouped, strict=True):
        out: dict[str, dict[str, Decimal]] = {}
        for f in feature_ids:
            row = {name: ZERO for name in sorted(kept[f])}
            for name, amount in by_feature[f].items():
                slot = name if name in kept[f] else OTHER
                row[slot] = row.get(slot, ZERO) + amount
            out[f] = row
        bins.append(EventBin(p, v, out))
    return EventAggregate(bins, totals)
