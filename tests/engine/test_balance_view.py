"""The Balance read model (docs/rules.md 2.6) on the pure rule: every field of the unlimited and
of the boolean view, and sums over several rows."""

from __future__ import annotations

from datetime import timedelta

import attrs

from autumn_core.model import RolloverState
from autumn_core.results import Balance, RolloverBalance
from autumn_core.rules.balance_view import balance_view, released_seats
from tests.engine.helpers import T0, D, row


def test_an_unlimited_view_sums_the_usage_of_every_unlimited_row_and_shows_each_field() -> None:
    """Given two unlimited rows with usage 3 and 4, a monthly usage-billed row (cap 10) and a
    daily one (no cap), when viewed, then the Balance is unlimited with usage 7, overage
    allowed, no cap (one row has none), the earliest reset, "multiple" intervals and every
    row in the breakdown."""
    # given
    first = attrs.evolve(row(unlimited=True, id="u1"), unlimited_usage=D(3))
    second = attrs.evolve(row(unlimited=True, id="u2"), unlimited_usage=D(4))
    capped = row(granted=5, billing="usage", max_purchase=10, reset="month", id="capped")
    daily = row(granted=1, billing="usage", reset="day", id="daily")
    rows = [first, second, capped, daily]
    # when
    view = balance_view("messages", "metered", rows, T0)
    # then
    assert view == Balance(
        feature_id="messages",
        type="metered",
        unlimited=True,
        usage=D(7),
        overage_allowed=True,
        max_purchase=None,
        next_reset_at=daily.next_reset_at,
        interval="multiple",
        breakdown=[r.public for r in rows],
        rollovers=[],
    )


def test_an_unlimited_view_with_capped_usage_rows_sums_their_caps() -> None:
    """Given an unlimited row and a usage-billed row capped at 10, when viewed, then the cap
    shown is 10 and the interval is the one interval of the rows that reset."""
    # given
    rows = [
        row(unlimited=True, id="u", reset="month"),
        row(billing="usage", max_purchase=10, reset="month", id="c"),
    ]
    # when
    view = balance_view("messages", "metered", rows, T0)
    # then
    assert (view.unlimited, view.max_purchase, view.interval) == (True, D(10), "month")


def test_an_unlimited_view_without_usage_billing_shows_no_cap() -> None:
    """Given one unlimited row only, when viewed, then no overage, no cap and no interval."""
    view = balance_view("messages", "metered", [row(unlimited=True, id="u")], T0)
    assert view == Balance(
        feature_id="messages",
        type="metered",
        unlimited=True,
        breakdown=[view.breakdown[0]],
    )
    assert (view.overage_allowed, view.max_purchase, view.interval) == (False, None, None)


def test_a_boolean_view_has_no_quantities_and_no_rows() -> None:
    """Given a boolean feature's rows, when viewed, then only its id and type are shown."""
    view = balance_view("sso", "boolean", [row("sso", granted=1)], T0)
    assert view == Balance(feature_id="sso", type="boolean")


def test_a_zero_balance_is_neither_remaining_nor_overage_and_ties_keep_the_first_reset() -> None:
    """Given a row at exactly 0 and a row of 5 with the same reset, when viewed, then remaining
    is 5, overage 0, usage 5 of 10 granted and the reset is that instant."""
    # given
    rows = [row(granted=5, balance=0, reset="month", id="a"), row(granted=5, reset="month")]
    # when
    view = balance_view("messages", "metered", rows, T0)
    # then
    assert (view.granted, view.remaining, view.usage, view.overage) == (D(10), D(5), D(5), D(0))
    assert view.next_reset_at == rows[0].next_reset_at


def test_paid_seats_not_in_use_count_as_remaining() -> None:
    """P7: given a usage-billed seat row with 2 included seats and 5 paid seats, 4 seats in use
    (so 2 paid seats used, 3 paid for and free), when viewed, then remaining is the 3 released
    paid seats, and the same row billed as prepaid or not allocated releases none."""
    # given
    seats = attrs.evolve(
        row("seats", granted=2, balance=-2, billing="usage", allocated=True),
        paid_seats=D(5),
        included=D(2),
    )
    # when
    view = balance_view("seats", "allocated", [seats], T0)
    # then
    assert (view.granted, view.usage, view.overage, view.remaining) == (D(2), D(4), D(2), D(3))
    prepaid = attrs.evolve(seats, billing="prepaid")
    assert balance_view("seats", "allocated", [prepaid], T0).remaining == D(0)
    metered = attrs.evolve(seats, allocated=False)
    assert balance_view("seats", "continuous_use", [metered], T0).remaining == D(0)
    # and the rule itself releases seats of usage-billed allocated rows only
    assert [released_seats(r) for r in (seats, prepaid, metered)] == [D(3), D(0), D(0)]


def test_released_seats_add_to_the_remaining_of_the_other_rows() -> None:
    """Given a grant of 1 seat beside the seat row releasing 3 paid seats, when viewed, then
    remaining is 1 + 3 (the released seats add to what the other rows left)."""
    # given
    grant = row("seats", granted=1, grant=True, allocated=True)
    seats = attrs.evolve(
        row("seats", granted=2, balance=-2, billing="usage", allocated=True),
        paid_seats=D(5),
        included=D(2),
    )
    # when
    view = balance_view("seats", "allocated", [grant, seats], T0)
    # then
    assert (view.granted, view.remaining) == (D(3), D(4))


def test_an_expired_rollover_is_skipped_and_the_live_ones_after_it_still_count() -> None:
    """Given a row of 10 (4 left) with an expired rollover of 5 and then a live one of 3 (2
    left), when viewed, then only the live rollover adds to granted and remaining and is
    listed."""
    # given
    later = T0 + timedelta(days=20)
    rollovers = (
        RolloverState("ro_1", D(5), D(5), T0 - timedelta(days=1), T0 - timedelta(days=40)),
        RolloverState("ro_2", D(3), D(2), later, T0 - timedelta(days=10)),
    )
    rows = [row(granted=10, balance=4, reset="month", rollovers=rollovers)]
    # when
    view = balance_view("messages", "metered", rows, T0)
    # then
    assert (view.granted, view.remaining, view.usage) == (D(13), D(6), D(7))
    assert view.rollovers == [RolloverBalance(D(3), D(2), later)]


def test_no_rows_have_no_interval() -> None:
    """Given no live rows, when viewed, then nothing is granted and there is no interval."""
    view = balance_view("messages", "metered", [], T0)
    assert (view.granted, view.remaining, view.interval, view.next_reset_at) == (
        D(0),
        D(0),
        None,
        None,
    )


def test_an_unlimited_view_still_lists_the_live_rollovers_of_its_limited_rows() -> None:
    """Given an unlimited grant beside a monthly row carrying a live rollover, when viewed, then
    the view is unlimited and still lists that rollover (what the breakdown's rows carry)."""
    # given
    later = T0 + timedelta(days=20)
    rollover = RolloverState("ro_1", D(3), D(2), later, T0 - timedelta(days=10))
    rows = [
        row(unlimited=True, grant=True),
        row(granted=10, reset="month", rollovers=(rollover,)),
    ]
    # when
    view = balance_view("messages", "metered", rows, T0)
    # then
    assert view.unlimited
    assert view.rollovers == [RolloverBalance(D(3), D(2), later)]
