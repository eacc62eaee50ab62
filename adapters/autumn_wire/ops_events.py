"""``events.aggregate``: usage per time bin, as autumn-js's ``useAggregateEvents`` and the SDK
read it (``list`` of bins with ``period`` in epoch ms, ``total`` per feature)."""

from __future__ import annotations

from datetime import timedelta

from autumn_wire.body import Body, sub
from autumn_wire.errors import invalid_inputs
from autumn_wire.ops import Wire
from autumn_wire.shapes import Json, ms, num

_RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
_RANGES["90d"] = timedelta(days=90)
_CYCLES = ("last_cycle", "1bc", "3bc")
_BINS = ("hour", "day", "week", "month")
_UTC = ("UTC", "Etc/UTC", "GMT")


def aggregate(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.str_("customer_id")
    if cid is None:
        raise invalid_inputs("customer_id: required by the embedded engine")
    raw_fid = b.raw("feature_id")
    if raw_fid is None:
        raise invalid_inputs("feature_id: required")
    fids = [raw_fid] if isinstance(raw_fid, str) else b.str_list("feature_id")
    if not fids:
        raise invalid_inputs("feature_id: give at least one feature")
    entity = b.str_("entity_id")
    group_by = b.str_("group_by")
    if group_by == "$plan_id":
        raise invalid_inputs("group_by: $plan_id is not supported by the embedded engine")
    rng = b.enum("range", (*_RANGES, *_CYCLES))
    if rng in _CYCLES:
        raise invalid_inputs(f"range: {rng} is not supported by the embedded engine")
    bin_size = b.enum("bin_size", _BINS)
    tz = b.str_("timezone")
    if tz is not None and tz not in _UTC:
        raise invalid_inputs(f"timezone: only UTC bins are supported, got {tz!r}")
    max_groups = b.int_("max_groups", low=1, high=100)
    measure = b.enum("measure", ("sum", "count"))
    raw_custom = b.obj("custom_range")
    b.done()
    now = w.billing.clock.now()
    if raw_custom is not None:
        if rng is not None:
            raise invalid_inputs("give range or custom_range, not both")
        c = sub("custom_range", raw_custom)
        start, end = c.ms("start"), c.ms("end")
        c.done()
        if start is None or end is None:
            raise invalid_inputs("custom_range: start and end are required")
    elif rng is not None:  # up to now, the current bin included
        start, end = now - _RANGES[rng], now + timedelta(milliseconds=1)
    else:
        raise invalid_inputs("range or custom_range is required")
    size = bin_size or ("hour" if rng == "24h" else "day")
    agg = w.billing.events.aggregate(
        cid,
        fids,
        start=start,
        end=end,
        bin_size=size,
        count=measure == "count",
        entity_id=entity,
        group_by=group_by,
        **({"max_groups": max_groups} if max_groups is not None else {}),
    )
    rows: list[Json] = []
    for bin_ in agg.bins:
        row: Json = {
            "period": ms(bin_.period_start),
            "values": {k: num(v) for k, v in bin_.values.items()},
        }
        if bin_.grouped is not None:
            row["grouped_values"] = {
                f: {g: num(v) for g, v in groups.items()} for f, groups in bin_.grouped.items()
            }
        rows.append(row)
    return {
        "list": rows,
        "total": {f: {"count": t.count, "sum": num(t.sum)} for f, t in agg.totals.items()},
    }
