"""balances.set (B2, B3) on the pure engine, and the Balance read model (DOMAIN.md 2.6)."""

from __future__ import annotations

from datetime import timedelta

import attrs

from autumn_core.catalog import Rollover
from autumn_core.model import RowState
from autumn_core.rules.balance_view import balance_view
from autumn_core.rules.deduction import Candidate, shift_total
from tests.engine.helpers import T0, D, ordered, roll, row


def apply(rows: list[RowState], changed: dict[str, RowState]) -> list[RowState]:
    return [changed.get(r.id, r) for r in rows]


# -- balances.set (B2, B3) -----------------------------------------------------------------------
def test_b2_set_remaining_below_total_drains_rows_in_order() -> None:
    """B2: granted 250 (200 + 50) -> set remaining 190 -> usage 60, drained in deduction order."""
    a = row(granted=200, reset="month")
    g = row(granted=50, grant=True)
    rows = apply([a, g], shift_total(ordered([a, g]), D(250 - 190)))
    assert [r.balance for r in rows] == [D(140), D(50)]
    view = balance_view("messages", "metered", rows, T0)
    assert (view.granted, view.remaining, view.usage) == (D(250), D(190), D(60))


def test_b2_set_remaining_above_granted_lands_on_the_first_row() -> None:
    """B2: set 280 on granted 250 -> the first row ends above granted, usage -30."""
    a = row(granted=200, balance=100, reset="month")
    g = row(granted=50, balance=-10, grant=True)
    rows = apply([a, g], shift_total(ordered([a, g]), D(90 - 280)))
    assert [r.balance for r in rows] == [D(280), D(0)]  # negative lifted first, rest on first
    view = balance_view("messages", "metered", rows, T0)
    assert (view.granted, view.remaining, view.usage) == (D(250), D(280), D(-30))


def test_b2_positive_delta_drains_rollovers_first_then_pushes_first_row_negative() -> None:
    """B2: rollovers (soonest expiry first), then rows to 0, then the first row goes negative."""
    later = roll(10, expires_at=T0 + timedelta(days=60))
    soon = roll(10, expires_at=T0 + timedelta(days=30))
    a = row(granted=20, reset="month", rollovers=[later])
    b = row(granted=30, add_on=True, rollovers=[soon])
    rows = apply([a, b], shift_total(ordered([a, b]), D(100)))
    assert [r.balance for r in rows] == [D(-30), D(0)]
    assert [x.balance for r in rows for x in r.rollovers] == [D(0), D(0)]
    partial = apply([a, b], shift_total(ordered([a, b]), D(15)))
    assert [x.balance for r in partial for x in r.rollovers] == [D(5), D(0)]


def test_b3_set_usage_is_set_remaining_of_granted_minus_usage() -> None:
    """B3: granted 250, usage 310 -> remaining 0, overage 60; usage 0 -> remaining 250."""
    a = row(granted=250, reset="month")
    over = apply([a], shift_total(ordered([a]), D(250) - (D(250) - D(310))))
    view = balance_view("messages", "metered", over, T0)
    assert (view.remaining, view.overage, view.usage) == (D(0), D(60), D(310))
    back = apply(over, shift_total(ordered(over), D(-60) - D(250)))
    view = balance_view("messages", "metered", back, T0)
    assert (view.remaining, view.usage) == (D(250), D(0))


def test_b2_zero_delta_changes_nothing() -> None:
    a = row(granted=5)
    assert shift_total(ordered([a]), D(0)) == {}


def in_order(*rows: RowState) -> list[Candidate]:
    """The feature's own rows as candidates, in the order given."""
    return [Candidate(r, D(1)) for r in rows]


def test_b2_no_rows_take_no_shift() -> None:
    """Given a subject without rows, when its total is moved by 5, then nothing changes."""
    assert shift_total([], D(5)) == {}
    assert shift_total([], D(-5)) == {}


def test_b2_a_shift_of_one_or_less_moves_the_total() -> None:
    """Given a row with 10 left (and one at -3), when the total moves down by 1, then 9 is
    left; when it moves up by 1 (then by half a unit), then the negative row is lifted."""
    a = row(granted=10)
    neg = row(granted=0, balance=-3)
    assert shift_total(in_order(a), D(1))[a.id].balance == D(9)
    assert shift_total(in_order(a, neg), D(-1))[neg.id].balance == D(-2)
    assert shift_total(in_order(a, neg), D("-0.5"))[neg.id].balance == D("-2.5")


def test_b2_only_the_rows_whose_balance_moves_are_changed() -> None:
    """Given rows at 0 and 10, when the total moves down by 5, then only the second row
    changes; given rows at 0, -5 and -3 and 10, when it moves up by 5, then only the -5 row
    (lifted to 0) changes; when it moves up by 3 over rows at 10 and -3, the first stays."""
    empty, full = row(granted=10, balance=0), row(granted=10)
    assert {r.id: r.balance for r in shift_total(in_order(empty, full), D(5)).values()} == {
        full.id: D(5)
    }
    zero, low, lower = row(granted=5, balance=0), row(granted=5, balance=-5), row(balance=-3)
    lifted = shift_total(in_order(zero, low, lower, full), D(-5))
    assert {r.id: r.balance for r in lifted.values()} == {low.id: D(0)}
    assert {r.id: r.balance for r in shift_total(in_order(full, lower), D(-3)).values()} == {
        lower.id: D(0)
    }


def test_b2_rollovers_drain_soonest_first_and_only_the_drained_rows_change() -> None:
    """Given row a (10 left), row b with a never-expiring rollover of 5 and one of 0.5 expiring
    in 30 days, and row c with a rollover of 4 expiring in 60 days, when the total moves down
    by 0.5, then only b's expiring rollover goes; by 1, then c's rollover gives the other half
    and b's never-expiring one is untouched; no row balance moves."""
    soon = roll("0.5", expires_at=T0 + timedelta(days=30))
    a = row(granted=10)
    b = row(granted=10, rollovers=[roll(5), soon])
    c = row(granted=10, rollovers=[roll(4, expires_at=T0 + timedelta(days=60))])
    half = shift_total(in_order(a, c, b), D("0.5"))
    assert set(half) == {b.id}
    assert [x.balance for x in half[b.id].rollovers] == [D(5), D(0)]
    one = shift_total(in_order(a, c, b), D(1))
    assert set(one) == {b.id, c.id}
    assert [x.balance for x in one[b.id].rollovers] == [D(5), D(0)]
    assert [x.balance for x in one[c.id].rollovers] == [D("3.5")]
    assert (one[b.id].balance, one[c.id].balance) == (D(10), D(10))


def test_b2_a_spent_rollover_is_not_drained_again() -> None:
    """Given row a (10 left) and row c at 0 whose rollover is spent, when the total moves
    down by 5, then only a changes."""
    a = row(granted=10)
    c = row(granted=10, balance=0, rollovers=[roll(4, 0)])
    assert {r.id: r.balance for r in shift_total(in_order(c, a), D(5)).values()} == {a.id: D(5)}


def test_b2_rollovers_expired_by_now_are_left_alone() -> None:
    """Given a row (10 left) with a rollover of 5 that expired at now and one expiring a day
    later, when the total moves down by 8 at now, then the live rollover gives 5 and the row
    3; the expired one keeps its 5."""
    dead, live = roll(5, expires_at=T0), roll(5, expires_at=T0 + timedelta(days=1))
    a = row(granted=10, rollovers=[dead, live])
    new = shift_total(in_order(a), D(8), T0)[a.id]
    assert [x.balance for x in new.rollovers] == [D(5), D(0)]
    assert new.balance == D(7)


# -- the Balance view (2.6) ----------------------------------------------------------------------
def test_view_sums_rows_rollovers_and_overage() -> None:
    """2.6: granted = Σ granted + Σ rollover amounts; remaining = Σ max(0, balance) + rollovers."""
    a = row(granted=100, balance=-20, reset="month", billing="usage", max_purchase=50)
    b = row(granted=30, balance=12, grant=True, rollover=None)
    c = row(
        granted=40,
        balance=5,
        reset="month",
        rollover=Rollover(max=100),
        rollovers=[roll(25, 7), roll(9, 9, expires_at=T0)],  # the second has expired
    )
    v = balance_view("messages", "metered", [a, b, c], T0)
    assert v.granted == D(100 + 30 + 40 + 25)
    assert v.remaining == D(12 + 5 + 7)
    assert v.usage == D(195) - D(-20 + 12 + 5 + 7)
    assert v.overage == D(20)
    assert v.overage_allowed is True
    assert v.max_purchase == D(50)
    assert [(r.amount, r.balance) for r in v.rollovers] == [(D(25), D(7))]
    assert [b.balance for b in v.breakdown] == [D(-20), D(12), D(5)]
    assert v.breakdown[0].usage == D(120) and v.breakdown[0].overage_allowed


def test_view_max_purchase_sums_capped_usage_rows_none_when_any_uncapped_or_none() -> None:
    """2.6: max_purchase = Σ over usage rows; None when none is usage-billed or any is uncapped."""
    u1 = row(granted=1, billing="usage", max_purchase=10, reset="month")
    u2 = row(granted=1, billing="usage", max_purchase="2.5", reset="month")
    uncapped = row(granted=1, billing="usage", reset="month")
    free = row(granted=1, reset="month")
    assert balance_view("m", "metered", [u1, u2, free], T0).max_purchase == D("12.5")
    assert balance_view("m", "metered", [u1, uncapped], T0).max_purchase is None
    assert balance_view("m", "metered", [free], T0).max_purchase is None
    assert balance_view("m", "metered", [free], T0).overage_allowed is False


def test_view_interval_common_multiple_or_none_and_earliest_reset() -> None:
    """2.6: the common interval, "multiple" when rows differ, None when no row resets."""
    day = row(granted=1, reset="day")
    month = row(granted=1, reset="month")
    never = row(granted=1)
    two_weeks = row(granted=1, reset="week", reset_count=2)
    assert balance_view("m", "metered", [month, month], T0).interval == "month"
    assert balance_view("m", "metered", [day, month], T0).interval == "multiple"
    assert balance_view("m", "metered", [month, never], T0).interval == "multiple"
    assert balance_view("m", "metered", [never], T0).interval is None
    assert balance_view("m", "metered", [two_weeks], T0).interval == "2_week"
    v = balance_view("m", "metered", [month, day, never], T0)
    assert v.next_reset_at == T0 + timedelta(days=1)


def test_view_unlimited_shows_tracked_usage_and_zeros() -> None:
    """2.6: any unlimited row -> unlimited, granted = remaining = 0, usage = tracked, overage 0."""
    unl = row(unlimited=True)
    unl = attrs.evolve(unl, unlimited_usage=D("4.5"))
    other = row(granted=10, balance=-3)
    v = balance_view("m", "metered", [unl, other], T0)
    assert (v.unlimited, v.granted, v.remaining, v.usage, v.overage) == (
        True,
        D(0),
        D(0),
        D("4.5"),
        D(0),
    )


def test_view_boolean_is_zeroed() -> None:
    """2.6/E2: a granted boolean feature appears with type boolean and zeros."""
    v = balance_view("dashboard", "boolean", (), T0)
    assert (v.type, v.granted, v.remaining, v.usage, v.breakdown) == ("boolean", 0, 0, 0, [])


def test_view_released_seats_count_in_remaining() -> None:
    """2.6/P7: remaining includes paid seats - max(0, usage - included)."""
    seats = row("users", granted=1, balance=0, allocated=True, billing="usage")
    seats = attrs.evolve(seats, paid_seats=D(2))
    v = balance_view("users", "allocated", [seats], T0)  # usage 1 of included 1, 2 paid
    assert (v.remaining, v.usage, v.granted) == (D(2), D(1), D(1))
