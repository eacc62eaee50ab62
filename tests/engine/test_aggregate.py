"""Usage over time (R16) on the pure rule: UTC bins, the features an event counts for, groups."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import pytest

from autumn_core.model import EventRecord
from autumn_core.rules.aggregate import OTHER, aggregate, bin_start, features_of, group_of


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def event(
    value: Any = 1,
    *,
    at: datetime = utc(2025, 3, 5, 10),
    feature: str | None = "messages",
    name: str | None = None,
    entity: str | None = None,
    **properties: Any,
) -> EventRecord:
    return EventRecord("evt", "cus_pk", entity, feature, name, D(value), properties, at, at)


#: Wednesday 5 March 2025, 10:37:21.5
NOW = datetime(2025, 3, 5, 10, 37, 21, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("size", "start"),
    [
        ("hour", utc(2025, 3, 5, 10)),
        ("day", utc(2025, 3, 5)),
        ("week", utc(2025, 3, 3)),  # the Monday
        ("month", utc(2025, 3, 1)),
    ],
)
def test_r16_bins_start_at_the_utc_hour_midnight_monday_or_first(
    size: str, start: datetime
) -> None:
    """Given an instant on Wednesday 5 March 10:37:21.5, then its bin starts at 10:00, at
    midnight, on Monday 3 March, on 1 March."""
    assert bin_start(NOW, size) == start


@pytest.mark.parametrize(
    ("size", "start", "periods"),
    [
        ("hour", utc(2025, 3, 5, 22, 30), [utc(2025, 3, 5, 22), utc(2025, 3, 5, 23)]),
        ("day", utc(2025, 2, 27, 12), [utc(2025, 2, 27), utc(2025, 2, 28), utc(2025, 3, 1)]),
        ("week", utc(2025, 3, 9, 12), [utc(2025, 3, 3), utc(2025, 3, 10)]),
        ("month", utc(2024, 11, 30), [utc(2024, 11, 1), utc(2024, 12, 1), utc(2025, 1, 1)]),
    ],
)
def test_r16_every_bin_from_the_start_to_the_end_is_listed(
    size: str, start: datetime, periods: list[datetime]
) -> None:
    """Given a range from ``start`` to just after the last listed bin opens, then every bin is
    listed once, in order, with zeros: hours past midnight, days past a month end, weeks from
    Monday, months past a year end."""
    end = periods[-1].replace(microsecond=1)
    agg = aggregate([], ["messages"], start=start, end=end, bin_size=size, event_names={})
    assert [b.period_start for b in agg.bins] == periods
    assert [b.values for b in agg.bins] == [{"messages": D(0)}] * len(periods)


def test_r16_an_event_counts_for_its_feature_or_the_features_listening_to_its_name() -> None:
    """Given features messages and tokens, where tokens listens to "chat", then an event of
    messages counts for messages only, one named chat for tokens only, one of another feature
    or name for none."""
    asked, names = ["messages", "tokens"], {"tokens": ["chat"]}
    assert features_of(event(), asked, names) == ["messages"]
    assert features_of(event(feature="words"), asked, names) == []
    assert features_of(event(feature=None, name="chat"), asked, names) == ["tokens"]
    assert features_of(event(feature=None, name="other"), asked, names) == []
    assert features_of(event(feature=None, name=None), asked, names) == []


def test_r16_groups_by_entity_customer_or_property() -> None:
    """Given an event of entity e1 with properties model=gpt and n=3, then it groups under e1,
    under the customer id, under "gpt" and "3"; a missing value groups under ""."""
    ev = event(entity="e1", model="gpt", n=3)
    assert group_of(ev, "$entity_id", "cus") == "e1"
    assert group_of(event(), "$entity_id", "cus") == ""
    assert group_of(ev, "$customer_id", "cus") == "cus"
    assert group_of(ev, "$customer_id", None) == ""
    assert group_of(ev, "properties.model", "cus") == "gpt"
    assert group_of(ev, "n", "cus") == "3"
    assert group_of(ev, "properties.missing", "cus") == ""


def test_r16_sums_counts_and_totals_of_events_inside_the_range() -> None:
    """Given a 7 before the range, events of 2.5 at its start and 4 on 5 March, 1 on 6 March
    and 7 at the range's end, when two days are aggregated, then the days sum 6.5 and 1 (or
    count 2 and 1) and the totals are 3 events summing 7.5; the events outside are left out,
    also one at an end that falls inside a day (12:00)."""
    events = [
        event(7, at=utc(2025, 3, 4, 23)),
        event("2.5", at=utc(2025, 3, 5)),
        event(4, at=utc(2025, 3, 5, 23)),
        event(1, at=utc(2025, 3, 6, 12)),
        event(7, at=utc(2025, 3, 7)),
    ]
    window = {"start": utc(2025, 3, 5), "end": utc(2025, 3, 7), "bin_size": "day"}
    summed = aggregate(events, ["messages"], event_names={}, **window)  # type: ignore[arg-type]
    assert [b.values["messages"] for b in summed.bins] == [D("6.5"), D(1)]
    assert summed.totals["messages"].count == 3
    assert summed.totals["messages"].sum == D("7.5")
    assert summed.bins[0].grouped is None
    counted = aggregate(events, ["messages"], event_names={}, count=True, **window)  # type: ignore[arg-type]
    assert [b.values["messages"] for b in counted.bins] == [D(2), D(1)]
    assert counted.totals["messages"].sum == D("7.5")
    noon = aggregate(
        events,
        ["messages"],
        event_names={},
        start=utc(2025, 3, 5),
        end=utc(2025, 3, 6, 12),
        bin_size="day",
    )
    assert [b.values["messages"] for b in noon.bins] == [D("6.5"), D(0)]


def test_r16_groups_beyond_the_largest_are_summed_under_other() -> None:
    """Given events of models a (1), b (3), c (3 + 1) and d (3) in one day, when grouped by
    model keeping 2 groups, then c and b (b before d: a tie goes by name) are kept and a and d
    sum 4 under Other; the totals still count every event."""
    events = [
        event(1, model="a"),
        event(3, model="d"),
        event(3, model="c"),
        event(3, model="b"),
        event(1, model="c"),
    ]
    agg = aggregate(
        events,
        ["messages"],
        start=utc(2025, 3, 5),
        end=utc(2025, 3, 6),
        bin_size="day",
        event_names={},
        group_by="properties.model",
        max_groups=2,
    )
    (day,) = agg.bins
    assert day.period_start == utc(2025, 3, 5)
    assert day.grouped == {"messages": {"b": D(3), "c": D(4), OTHER: D(4)}}
    assert day.values == {"messages": D(11)}
    assert agg.totals["messages"].count == 5


def test_r16_groups_by_the_customer_id() -> None:
    """Given two events of customer cus, when grouped by $customer_id, then both sum under
    "cus"."""
    agg = aggregate(
        [event(2), event(3)],
        ["messages"],
        start=utc(2025, 3, 5),
        end=utc(2025, 3, 6),
        bin_size="day",
        event_names={},
        group_by="$customer_id",
        customer_id="cus",
    )
    assert agg.bins[0].grouped == {"messages": {"cus": D(5)}}
