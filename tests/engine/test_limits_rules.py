"""Billing controls as pure rules (BC3, BC4, BC6): usage windows, capacity, alert conditions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import attrs
import pytest

from autumn_core.controls import UsageAlert, UsageLimit
from autumn_core.model import RowState
from autumn_core.rules.deduction import Candidate
from autumn_core.rules.limits import (
    INFINITE,
    AlertFigures,
    FeatureRule,
    alert_raised,
    block_reason,
    capacity,
    window_bounds,
)
from tests.engine.helpers import T0, roll, row


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


#: Wednesday 5 March 2025, 10:37:21.5
NOW = datetime(2025, 3, 5, 10, 37, 21, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("interval", "start", "end"),
    [
        ("hour", utc(2025, 3, 5, 10), utc(2025, 3, 5, 11)),
        ("day", utc(2025, 3, 5), utc(2025, 3, 6)),
        ("week", utc(2025, 3, 3), utc(2025, 3, 10)),
        ("month", utc(2025, 3, 1), utc(2025, 4, 1)),
        ("year", utc(2025, 1, 1), utc(2026, 1, 1)),
    ],
)
def test_bc3_utc_windows_are_calendar_windows(
    interval: str, start: datetime, end: datetime
) -> None:
    """Given a limit per hour, day, week, month or year anchored in UTC (or on a billing cycle
    not started yet, or without one), then the window holding Wednesday 5 March 10:37:21.5
    is the calendar one: from 10:00, midnight, Monday, the 1st, January 1st."""
    utc_limit = UsageLimit("messages", D(10), interval, anchor="utc")
    cycle_limit = UsageLimit("messages", D(10), interval)
    assert window_bounds(utc_limit, T0, NOW) == (start, end)
    assert window_bounds(cycle_limit, None, NOW) == (start, end)
    assert window_bounds(cycle_limit, utc(2025, 3, 6), NOW) == (start, end)


def test_bc3_billing_cycle_windows_are_phased_to_the_anchor() -> None:
    """Given a monthly limit on a cycle anchored on 31 January 10:00, then the window holding
    5 March is [28 February 10:00, 31 March 10:00); a daily one [5 March 10:00, 6 March)."""
    monthly = UsageLimit("messages", D(10), "month")
    assert window_bounds(monthly, T0, NOW) == (utc(2025, 2, 28, 10), utc(2025, 3, 31, 10))
    daily = UsageLimit("messages", D(10), "day")
    assert window_bounds(daily, T0, NOW) == (utc(2025, 3, 5, 10), utc(2025, 3, 6, 10))


def test_bc6_capacity_in_feature_units() -> None:
    """Given a row with 4 left and a live rollover of 0.5 (one expired at now is ignored), and
    a credit pool with 10 credits at 2.5 per unit, then 8.5 units can still be used."""
    own = row(granted=10, balance=4, rollovers=[roll("0.5"), roll(3, expires_at=T0)])
    pool = row("credits", granted=10)
    cands = [Candidate(own, D(1)), Candidate(pool, D("2.5"))]
    assert capacity(cands, T0) == D("8.5")


def test_bc6_capacity_counts_pass2_room_down_to_the_floor() -> None:
    """Given a usage-billed row at -2 capped at 5 (3 of room) and a row at -1, then the
    capacity is 3; an uncapped usage row or an unlimited row makes it infinite."""
    capped = row(granted=0, balance=-2, billing="usage", max_purchase=5)
    spent = row(granted=5, balance=-1)
    assert capacity([Candidate(capped, D(1)), Candidate(spent, D(1))], T0) == D(3)
    uncapped = row(granted=0, billing="usage")
    assert capacity([Candidate(spent, D(1)), Candidate(uncapped, D(1))], T0) == INFINITE
    assert capacity([Candidate(row(unlimited=True), D(1))], T0) == INFINITE


def test_bc6_why_a_feature_is_blocked() -> None:
    """Given rows with nothing left, then the reason is the spend limit (a usage row under one),
    else max_purchase (a capped usage row at its floor), else the included amount; with room
    or without rows, nothing is blocked."""
    from autumn_core.controls import SpendLimit

    at_floor = row(granted=0, balance=-5, billing="usage", max_purchase=5)
    empty = row(granted=5, balance=0)
    spend = {"messages": FeatureRule(spend=SpendLimit("messages", True, D(5)))}
    cands = [Candidate(empty, D(1)), Candidate(at_floor, D(1))]
    assert block_reason(cands, spend, T0) == "spend_limit"
    assert block_reason(cands, {}, T0) == "max_purchase"
    assert block_reason([Candidate(empty, D(1))], spend, T0) == "included"
    assert block_reason([Candidate(row(granted=5), D(1))], {}, T0) is None
    assert block_reason([], {}, T0) is None


@pytest.mark.parametrize(
    ("kind", "threshold", "raised", "quiet"),
    [
        ("usage", "80", (80, 20, 100), (D("79.99"), 20, 100)),
        ("remaining", "20", (80, 20, 100), (80, D("20.01"), 100)),
        ("usage_percentage", "80", (80, 20, 100), (D("79.99"), 20, 100)),
        ("remaining_percentage", "20", (80, 20, 100), (80, D("20.01"), 100)),
    ],
)
def test_bc4_alert_conditions_hold_at_their_threshold(
    kind: str, threshold: str, raised: tuple[object, ...], quiet: tuple[object, ...]
) -> None:
    """Given an alert at its threshold (usage 80 of 100, 20 remaining), then it holds exactly
    there and not a cent before; a percentage alert never holds against a basis of 0."""
    alert = UsageAlert("messages", D(threshold), kind)
    assert alert_raised(alert, AlertFigures(*(D(v) for v in raised)))  # type: ignore[arg-type]
    assert not alert_raised(alert, AlertFigures(*(D(v) for v in quiet)))  # type: ignore[arg-type]
    if kind.endswith("percentage"):
        assert not alert_raised(alert, AlertFigures(D(80), D(-1), D(0)))


def test_bc6_capacity_sums_every_rollover_fraction_and_pass2_room() -> None:
    """Given a usage-billed row at 0.5 capped at 2 with two live rollovers (1 and 0.25, one
    expiring in a day), then its capacity is 0.5 + 1.25 + 2 = 3.75; a free allocated row at 0
    has none under reject (it would go below zero only under cap)."""
    soon = roll("0.25", expires_at=datetime(2025, 2, 1, tzinfo=UTC))
    r = row(granted=5, balance="0.5", billing="usage", max_purchase=2, rollovers=[roll(1), soon])
    assert capacity([Candidate(r, D(1))], T0) == D("3.75")
    seats = row("users", granted=5, balance=0, allocated=True)
    assert capacity([Candidate(seats, D(1))], T0) == D(0)
    assert block_reason([Candidate(seats, D(1))], {}, T0) == "included"


def test_bc6_half_a_unit_left_or_a_live_expiring_rollover_is_not_blocked() -> None:
    """Given a row with 0.5 left, or a spent row with a rollover expiring tomorrow, then the
    feature is not blocked."""
    assert block_reason([Candidate(row(granted=5, balance="0.5"), D(1))], {}, T0) is None
    tomorrow = datetime(2025, 2, 1, tzinfo=UTC)
    rolled = row(granted=5, balance=0, rollovers=[roll(2, expires_at=tomorrow)])
    assert block_reason([Candidate(rolled, D(1))], {}, T0) is None


def test_bc4_a_percentage_of_a_basis_of_one_is_measured() -> None:
    """Given a basis of 1 unit fully used, then a 100 % usage alert holds."""
    alert = UsageAlert("messages", D(100), "usage_percentage")
    assert alert_raised(alert, AlertFigures(D(1), D(0), D(1)))


def test_bc3_a_billing_cycle_day_window_steps_one_day() -> None:
    """Given a daily limit on a cycle anchored on 31 January 10:00, then at 4 March 10:37 the
    window is [4 March 10:00, 5 March 10:00)."""
    daily = UsageLimit("messages", D(10), "day")
    at = utc(2025, 3, 4, 10, 37)
    assert window_bounds(daily, T0, at) == (utc(2025, 3, 4, 10), utc(2025, 3, 5, 10))


def test_bc2_a_spend_limit_in_percent_of_the_granted_amount() -> None:
    """Given a spend limit of 50 % over rows granting 10 and 30, then 20 units of overage are
    allowed; an absolute limit of 50 allows 50; a disabled or empty one caps nothing."""
    from autumn_core.controls import SpendLimit
    from autumn_core.rules.limits import spend_cap

    rows = [row(granted=10), row(granted=30)]
    percent = SpendLimit("messages", True, D(50), "usage_percentage")
    assert spend_cap(FeatureRule(spend=percent), rows) == D(20)
    assert spend_cap(FeatureRule(spend=SpendLimit("messages", True, D(50))), rows) == D(50)
    assert spend_cap(FeatureRule(spend=SpendLimit("messages", True, None)), rows) is None
    assert spend_cap(FeatureRule(), rows) is None


def test_bc2_restore_keeps_the_results_figures_on_the_original_rows() -> None:
    """Given a deduction over governed rows that moved a balance to 3 and spent a rollover,
    with 2 remaining, then the restored result keeps the original row's billing with the new
    balance and rollovers, and the applied, remainder and unlimited flag as they were."""
    from autumn_core.model import replace
    from autumn_core.rules.deduction import Deduction
    from autumn_core.rules.limits import restore

    original = row(granted=5, billing="prepaid", rollovers=[roll(2)])
    spent = (attrs.evolve(original.rollovers[0], balance=D(0)),)
    governed_new = replace(original, billing="usage", balance=D(3), rollovers=spent)
    result = Deduction({original.id: governed_new}, {"messages": D(4)}, D(2), True)
    restored = restore(result, {original.id: original})
    assert restored.changed == {original.id: replace(original, balance=D(3), rollovers=spent)}
    assert (restored.applied, restored.remainder, restored.absorbed_by_unlimited) == (
        {"messages": D(4)},
        D(2),
        True,
    )


def governed_floors(
    rows: list[RowState], rules: dict[str, FeatureRule]
) -> list[tuple[str | None, D | None]]:
    from autumn_core.rules.limits import governed

    out = governed([Candidate(r, D(1)) for r in rows], rules)
    return [(c.row.billing, c.row.max_purchase) for c in out]


def test_bc2_a_spend_limit_gives_its_room_to_the_first_row_only() -> None:
    """Given two usage-billed rows at 0 (the first capped at 5 by the plan) under a spend limit
    of 10 with overage left to the plan, then the first may go to -10 (the limit overrides
    max_purchase) and the second not below 0; a prepaid row allowed overage takes part too."""
    from autumn_core.controls import SpendLimit

    spend = FeatureRule(spend=SpendLimit("messages", True, D(10)))
    first = row(granted=0, billing="usage", max_purchase=5)
    second = row(granted=0, billing="usage")
    assert governed_floors([first, second], {"messages": spend}) == [
        ("usage", D(10)),
        ("usage", D(0)),
    ]
    prepaid = row(granted=0, billing="prepaid")
    allowed = FeatureRule(overage=True, spend=SpendLimit("messages", True, D(10)))
    assert governed_floors([prepaid], {"messages": allowed}) == [("usage", D(10))]


def test_bc2_overage_switches_keep_the_plans_cap_and_govern_every_feature() -> None:
    """Given overage allowed without a spend limit, then a usage row keeps the plan's cap of 5
    and a prepaid row becomes usage-billed without one; given overage refused for messages
    and for credits, then both features' usage rows lose their pass-2 room; a feature without
    a rule is left as it is."""
    capped = row(granted=0, billing="usage", max_purchase=5)
    prepaid = row(granted=0, billing="prepaid")
    on = {"messages": FeatureRule(overage=True)}
    assert governed_floors([capped, prepaid], on) == [("usage", D(5)), ("usage", None)]
    pool = row("credits", granted=0, billing="usage")
    words = row("words", granted=0, billing="usage")
    off = {"messages": FeatureRule(overage=False), "credits": FeatureRule(overage=False)}
    assert governed_floors([capped, pool, words], off) == [
        ("prepaid", D(5)),
        ("prepaid", None),
        ("usage", None),
    ]
