"""The Usage chart: events per day and feature as stacked bars, drawn as SVG on the server."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal

import attrs

from autumn_core import Event
from autumn_dashboard.fmt import number

WIDTH = 1080
HEIGHT = 200
_LEFT = 48
_BOTTOM = 22
_TOP = 8
#: Colour classes s0..s7 are defined in dashboard.css (no inline styles under the CSP).
_SERIES = 8


@attrs.frozen
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@attrs.frozen
class Chart:
    width: int
    height: int
    bars: list[Bar]
    #: (x, label) under the axis.
    ticks: list[tuple[float, str]]
    top_label: str
    baseline: float
    legend: list[tuple[int, str]]


def usage_chart(events: Iterable[Event], *, now: datetime, days: int) -> Chart:
    first = (now - timedelta(days=days - 1)).date()
    per_day: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    features: list[str] = []
    for e in events:
        fid = e.feature_id or e.event_name or "?"
        if fid not in features:
            features.append(fid)
        per_day[e.timestamp.date()][fid] += e.value
    totals = [sum(v for v in per_day[first + timedelta(d)].values() if v > 0) for d in range(days)]
    peak = max([Decimal(0), *totals]) or Decimal(1)
    plot_w = WIDTH - _LEFT - 4
    plot_h = HEIGHT - _BOTTOM - _TOP
    slot = plot_w / days
    bars: list[Bar] = []
    ticks: list[tuple[float, str]] = []
    every = 1 if days <= 7 else 5
    for d in range(days):
        day = first + timedelta(d)
        x = _LEFT + d * slot
        y = float(HEIGHT - _BOTTOM)
        for fid in features:
            value = per_day[day].get(fid, Decimal(0))
            if value <= 0:
                continue
            h = float(value / peak) * plot_h
            y -= h
            bars.append(
                Bar(
                    round(x + slot * 0.15, 1),
                    round(y, 1),
                    round(slot * 0.7, 1),
                    round(h, 1),
                    features.index(fid) % _SERIES,
                    f"{day.isoformat()} · {fid}: {number(value)}",
                )
            )
        if d % every == 0 or d == days - 1:
            ticks.append((round(x + slot / 2, 1), day.strftime("%b %d")))
    return Chart(
        WIDTH,
        HEIGHT,
        bars,
        ticks,
        number(peak if any(totals) else Decimal(0)),
        float(HEIGHT - _BOTTOM),
        [(i % _SERIES, f) for i, f in enumerate(features)],
    )
