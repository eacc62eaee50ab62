"""The deduction engine (DOMAIN.md §10, §12, R5-R11, CS1-CS5, K6, D5, D11), exact Decimals."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from autumn_core.rules.deduction import Candidate, deduct, pass2_floor
from autumn_core.values import arithmetic
from tests.engine.helpers import T0, D, balances_after, ordered, roll, row


# -- pass 1 and pass 2 (R7, R8) ----------------------------------------------------------------
def test_r7_pass1_never_pushes_a_row_below_zero_before_trying_the_next() -> None:
    """R7: pass 1 takes min(need, balance) from each row in order."""
    a = row(granted=10, reset="day")
    b = row(granted="5.5", reset="month")
    rows = [a, b]
    result = deduct(ordered(rows), D("12.25"), "cap", T0)
    assert balances_after(rows, result.changed) == [D(0), D("3.25")]
    assert result.applied == {"messages": D("12.25")}


def test_r8_overage_lands_on_the_first_usage_billed_row_down_to_its_floor() -> None:
    """R8/O9: pass 2 pushes only usage-billed rows below 0, floored at -max_purchase."""
    free = row(granted=10, reset="month")
    usage = row(granted=5, reset="month", billing="usage", max_purchase=20, add_on=True)
    rows = [free, usage]
    result = deduct(ordered(rows), D(30), "cap", T0)
    assert balances_after(rows, result.changed) == [D(0), D(-15)]
    assert result.remainder == 0
    capped = deduct(ordered(rows), D(40), "cap", T0)
    assert balances_after(rows, capped.changed) == [D(0), D(-20)]
    assert (capped.applied["messages"], capped.remainder) == (D(35), D(5))


def test_r8_uncapped_usage_row_has_no_floor() -> None:
    """R8: a usage-billed row without max_purchase goes as low as needed."""
    usage = row(granted=0, reset="month", billing="usage")
    result = deduct(ordered([usage]), D("1000000.01"), "reject", T0)
    assert result.changed[usage.id].balance == D("-1000000.01")
    assert result.remainder == 0


def test_r8_free_metered_and_prepaid_rows_stop_at_zero() -> None:
    """D11/R10: free metered with 30 left, track(45) -> applied 30, remainder 15."""
    free = row(granted=100, balance=30, reset="month")
    prepaid = row(granted=10, balance=0, billing="prepaid", add_on=True)
    result = deduct(ordered([free, prepaid]), D(45), "cap", T0)
    assert result.changed[free.id].balance == 0
    assert prepaid.id not in result.changed
    assert (result.applied, result.remainder) == ({"messages": D(30)}, D(15))


def test_d11_free_allocated_goes_negative_under_cap_not_under_reject() -> None:
    """D11/R10: free allocated, 5 included, all used: track(2) -> -2; reject -> nothing fits."""
    seats = row("users", granted=5, balance=0, allocated=True)
    capped = deduct(ordered([seats], "users"), D(2), "cap", T0)
    assert capped.changed[seats.id].balance == D(-2)
    rejected = deduct(ordered([seats], "users"), D(2), "reject", T0)
    assert (rejected.changed, rejected.remainder) == ({}, D(2))


def test_k6_reject_floors_included_50_max_purchase_150() -> None:
    """K6: included 50 with max_purchase=150: 200 fits, 201 does not."""
    usage = row(granted=50, reset="month", billing="usage", max_purchase=150)
    assert deduct(ordered([usage]), D(200), "reject", T0).remainder == 0
    assert deduct(ordered([usage]), D(201), "reject", T0).remainder == D(1)
    assert deduct(ordered([usage]), D("200.0001"), "reject", T0).remainder == D("0.0001")


@pytest.mark.parametrize(
    ("kwargs", "mode", "expected"),
    [
        ({"billing": "usage", "max_purchase": 7}, "cap", D(-7)),
        ({"billing": "usage"}, "reject", D("-Infinity")),
        ({"allocated": True}, "cap", D("-Infinity")),
        ({"allocated": True}, "reject", None),
        ({"billing": "prepaid"}, "cap", None),
        ({}, "cap", None),
        ({"billing": "prepaid"}, "overflow", D("-Infinity")),
    ],
)
def test_r8_floor_table(kwargs: dict, mode: str, expected: object) -> None:  # type: ignore[type-arg]
    """R8: the floor of each kind of row per mode (None: takes no part in pass 2)."""
    assert pass2_floor(row(granted=1, **kwargs), mode, first=True) == expected


# -- cap, reject, overflow (R9) ------------------------------------------------------------------
def test_r9_overflow_puts_the_rest_on_the_first_row_ignoring_max_purchase() -> None:
    """R9/R8: overflow -> the first row in order takes what pass 1 left, no floor."""
    free = row(granted=10, reset="day")
    usage = row(granted=5, reset="month", billing="usage", max_purchase=1)
    rows = [free, usage]
    result = deduct(ordered(rows), D(30), "overflow", T0)
    assert balances_after(rows, result.changed) == [D(-15), D(0)]
    assert (result.applied["messages"], result.remainder) == (D(30), D(0))


def test_r9_reject_reports_the_shortfall_and_cap_the_applied_part() -> None:
    """R9: the remainder is the part that did not fit; the caller raises (reject) or drops (cap)."""
    free = row(granted=10, reset="month")
    result = deduct(ordered([free]), D("10.5"), "reject", T0)
    assert result.remainder == D("0.5")
    assert result.applied == {"messages": D(10)}


def test_no_rows_leaves_everything_as_remainder() -> None:
    """E9/CS5: with no rows nothing is applied and the whole value remains."""
    result = deduct([], D(3), "cap", T0)
    assert (result.changed, result.applied, result.remainder) == ({}, {}, D(3))


def test_zero_value_changes_nothing() -> None:
    """track(value=0) is valid and moves no balance."""
    r = row(granted=10)
    result = deduct(ordered([r]), D(0), "reject", T0)
    assert (result.changed, result.applied, result.remainder) == ({}, {"messages": D(0)}, D(0))


# -- unlimited sink (R5) -------------------------------------------------------------------------
def test_r5_unlimited_row_absorbs_everything_and_nothing_else_changes() -> None:
    """R5: an unlimited row takes the whole value as a usage counter; refunds give it back."""
    unl = row(unlimited=True, add_on=True)
    limited = row(granted=10, reset="day")
    result = deduct(ordered([limited, unl]), D("7.5"), "reject", T0)
    assert set(result.changed) == {unl.id}
    assert result.changed[unl.id].unlimited_usage == D("7.5")
    assert result.absorbed_by_unlimited and result.remainder == 0
    after = result.changed[unl.id]
    refund = deduct(ordered([limited, after]), D(-10), "cap", T0)
    assert refund.changed[unl.id].unlimited_usage == 0
    assert refund.applied == {"messages": D("-7.5")}


# -- rollovers first (R6, RO4) -----------------------------------------------------------------
def test_r6_rollovers_first_by_soonest_expiry_none_last_then_rows() -> None:
    """R6: every row's rollovers drain before any row balance, soonest expiry first."""
    never = roll(5)
    soon = roll(3, expires_at=T0 + timedelta(days=2))
    later = roll(4, expires_at=T0 + timedelta(days=20))
    a = row(granted=10, reset="day", rollovers=[never])
    b = row(granted=10, reset="month", rollovers=[later, soon])
    result = deduct(ordered([a, b]), D(10), "cap", T0)
    new_a, new_b = result.changed[a.id], result.changed[b.id]
    assert [r.balance for r in new_b.rollovers] == [D(0), D(0)]  # later 4, soon 3 both spent
    assert [r.balance for r in new_a.rollovers] == [D(2)]  # never-expiring one last
    assert (new_a.balance, new_b.balance) == (D(10), D(10))


def test_r6_a_later_rows_rollover_goes_before_a_first_row_that_holds_the_value() -> None:
    """R6: rollovers of every row drain first, even when the first row alone holds the value."""
    a = row(granted=10, reset="day")
    b = row(granted=10, reset="month", rollovers=[roll(3)])
    result = deduct(ordered([a, b]), D(2), "cap", T0)
    assert balances_after([a, b], result.changed) == [D(10), D(10)]
    assert [r.balance for r in result.changed[b.id].rollovers] == [D(1)]
    assert a.id not in result.changed


def test_r5_an_unlimited_row_with_a_balance_still_absorbs_the_value() -> None:
    """R5: an unlimited row counts usage and keeps its balance, whatever that balance is."""
    unl = row(granted=10, unlimited=True)
    result = deduct(ordered([unl]), D(4), "cap", T0)
    after = result.changed[unl.id]
    assert (after.balance, after.unlimited_usage) == (D(10), D(4))
    assert result.absorbed_by_unlimited


def test_r6_expired_rollovers_are_ignored() -> None:
    """RO3: a rollover with expires_at <= now is not spent."""
    dead = roll(50, expires_at=T0)
    a = row(granted=10, reset="month", rollovers=[dead])
    result = deduct(ordered([a]), D(4), "cap", T0)
    assert result.changed[a.id].balance == D(6)
    assert result.changed[a.id].rollovers[0].balance == D(50)


def test_r6_credit_pool_rollovers_convert_by_cost() -> None:
    """R6/CS1: a pool's rollover pays member units at the member's cost."""
    pool = row("credits", granted=100, reset="month", rollovers=[roll(10)])
    result = deduct(ordered([pool], "words", {"credits": "2.5"}), D(6), "cap", T0)
    new = result.changed[pool.id]
    assert (new.rollovers[0].balance, new.balance) == (D(0), D(95))
    assert result.applied == {"credits": D(15)}


def test_refunds_never_refill_rollovers() -> None:
    """R6: a refund refills rows only."""
    a = row(granted=10, balance=4, reset="month", rollovers=[roll(5, 0)])
    result = deduct(ordered([a]), D(-100), "cap", T0)
    assert result.changed[a.id].balance == D(10)
    assert result.changed[a.id].rollovers[0].balance == 0


# -- refunds (D5, R11) ---------------------------------------------------------------------------
def test_r11_refund_lifts_negative_rows_first_then_refills_in_order_excess_dropped() -> None:
    """R11: A (main free 50/month), P (add-on usage, included 20/month)."""
    a = row(granted=50, reset="month")
    p = row(granted=20, reset="month", billing="usage", add_on=True)
    rows = [a, p]
    # track(90) -> A 0, P -20
    r1 = deduct(ordered(rows), D(90), "cap", T0)
    rows = [r1.changed.get(r.id, r) for r in rows]
    assert [r.balance for r in rows] == [D(0), D(-20)]
    # track(-35) -> pass 1 lifts P to 0, pass 2 refills A to 15
    r2 = deduct(ordered(rows), D(-35), "cap", T0)
    rows = [r2.changed.get(r.id, r) for r in rows]
    assert [r.balance for r in rows] == [D(15), D(0)]
    assert r2.applied == {"messages": D(-35)}
    # track(-60) -> A 50 and P 20, the remaining 5 dropped
    r3 = deduct(ordered(rows), D(-60), "cap", T0)
    rows = [r3.changed.get(r.id, r) for r in rows]
    assert [r.balance for r in rows] == [D(50), D(20)]
    assert (r3.applied, r3.remainder) == ({"messages": D(-55)}, D(5))


def test_d5_refund_never_lowers_a_row_above_granted() -> None:
    """D5: a row set above granted (B2) keeps its balance on refunds."""
    a = row(granted=10, balance=15)
    result = deduct(ordered([a]), D(-3), "cap", T0)
    assert (result.changed, result.remainder) == ({}, D(3))


# -- credit systems (CS1-CS5) --------------------------------------------------------------------
def test_cs4_member_drains_own_rows_then_the_pool_at_its_cost() -> None:
    """CS4: costs {search: 0.5}: search 10 and credits 100, track(search, 16) -> 0 and 97."""
    search = row("search", granted=10, reset="month")
    credits = row("credits", granted=100, reset="month")
    rows = [search, credits]
    result = deduct(ordered(rows, "search", {"credits": "0.5"}), D(16), "cap", T0)
    assert balances_after(rows, result.changed) == [D(0), D(97)]
    assert result.applied == {"search": D(10), "credits": D(3)}


def test_cs3_member_of_several_pools_uses_all_of_them() -> None:
    """CS3: every pool listing the member takes part, each at its own cost."""
    a = row("credits", granted=6, reset="day")
    b = row("tokens", granted=100, reset="month")
    rows = [a, b]
    result = deduct(ordered(rows, "words", {"credits": 3, "tokens": 2}), D(5), "cap", T0)
    # credits pays 2 words (6 credits), tokens pays the other 3 words (6 tokens)
    assert balances_after(rows, result.changed) == [D(0), D(94)]
    assert result.applied == {"credits": D(6), "tokens": D(6)}


def test_cs1_chained_pools_of_one_cost_stay_exact() -> None:
    """CS1: 1 credit of a 3-credit unit is 1/3 unit; the next pool of the same cost takes 2."""
    a = row("credits", granted=1, reset="day")
    b = row("credits", granted=10, reset="month")
    rows = [a, b]
    result = deduct(ordered(rows, "words", {"credits": 3}), D(1), "reject", T0)
    assert balances_after(rows, result.changed) == [D(0), D(8)]
    assert (result.applied, result.remainder) == ({"credits": D(3)}, D(0))


def test_cs1_remainder_in_member_units() -> None:
    """R9/CS1: what does not fit is reported in units of the tracked feature."""
    pool = row("credits", granted=10, reset="month")
    result = deduct(ordered([pool], "words", {"credits": "2.5"}), D(6), "reject", T0)
    assert (result.applied, result.remainder) == ({"credits": D(10)}, D(2))


def test_k5_dry_runs_direct_then_credits() -> None:
    """K5: images 8, credits 50 at 4 per image: 15 fits (8 + 28 credits), 25 does not (68)."""
    images = row("images", granted=8, reset="month")
    credits = row("credits", granted=50, reset="month")
    cands = ordered([credits, images], "images", {"credits": 4})
    ok = deduct(cands, D(15), "reject", T0)
    assert (ok.remainder, ok.applied) == (D(0), {"images": D(8), "credits": D(28)})
    denied = deduct(cands, D(25), "reject", T0)
    assert denied.remainder == D("4.5")  # 17 images needed 68 credits, 50 covered 12.5


def test_cs_refund_goes_back_to_pools_in_credits() -> None:
    """D5/CS1: a member refund refills its own rows then the pools, converted by cost."""
    search = row("search", granted=10, balance=0, reset="month")
    credits = row("credits", granted=100, balance=97, reset="month")
    rows = [search, credits]
    result = deduct(ordered(rows, "search", {"credits": "0.5"}), D(-16), "cap", T0)
    assert balances_after(rows, result.changed) == [D(10), D(100)]
    assert result.applied == {"search": D(-10), "credits": D(-3)}
    assert result.remainder == 0


# -- per-entity rows (D12, EN8) ------------------------------------------------------------------
def test_en8_customer_level_track_drains_entities_lexicographically() -> None:
    """EN8: 40 each for a and b; b used 15; a customer track of 30 drains a first: a 10, b 25."""
    a = row(granted=40, reset="month", entity_id="a")
    b = row(granted=40, balance=25, reset="month", entity_id="b")
    rows = [b, a]
    result = deduct(ordered(rows), D(30), "cap", T0)
    assert balances_after(rows, result.changed) == [D(25), D(10)]


def test_r12_entity_track_touches_its_rows_and_customer_rows_only() -> None:
    """R12: with entity_id, only that entity's per-entity rows (then customer rows) take part."""
    a = row(granted=5, reset="month", entity_id="a")
    b = row(granted=5, reset="month", entity_id="b")
    cus = row(granted=5, reset="month")
    rows = [a, b, cus]
    result = deduct(ordered(rows, entity_id="b"), D(8), "cap", T0)
    assert balances_after(rows, result.changed) == [D(5), D(0), D(2)]


# -- edges the mutation run found untested ------------------------------------------------------
def test_a_zero_value_leaves_unlimited_rows_and_rollovers_alone() -> None:
    """Given an unlimited row, or a row with a live rollover, when 0 is deducted, then no row
    is reported changed (a store would otherwise rewrite it)."""
    unl = row(unlimited=True)
    rolled = row(granted=10, rollovers=[roll(5)])
    for rows in ([unl], [rolled]):
        result = deduct(ordered(rows), D(0), "cap", T0)
        assert (result.changed, result.remainder) == ({}, D(0))


def test_a_dry_run_over_an_unlimited_row_builds_no_row() -> None:
    """K3: given an unlimited row that counted 4, when 3 is deducted (or 2 refunded) as a dry
    run, then what would be applied is reported and no row is built."""
    unl = row(unlimited=True)
    unl = attrs.evolve(unl, unlimited_usage=D(4))
    taken = deduct(ordered([unl]), D(3), "reject", T0, dry_run=True)
    assert (taken.changed, taken.applied, taken.absorbed_by_unlimited) == (
        {},
        {"messages": D(3)},
        True,
    )
    given = deduct(ordered([unl]), D(-2), "cap", T0, dry_run=True)
    assert (given.changed, given.applied) == ({}, {"messages": D(-2)})


def test_a_refund_without_rows_remains_whole() -> None:
    """D5: given no rows, when 3 is refunded, then nothing is applied and 3 remains."""
    result = deduct([], D(-3), "cap", T0)
    assert (result.changed, result.applied, result.remainder) == ({}, {}, D(3))


def test_a_dry_run_refund_reports_without_building_rows() -> None:
    """D5, K3: given a row at -4 of 10 granted, when 20 is refunded as a dry run, then 14 would
    be given back, 6 remain, and no row is built."""
    r = row(granted=10, balance=-4)
    result = deduct(ordered([r]), D(-20), "cap", T0, dry_run=True)
    assert (result.changed, result.applied, result.remainder) == ({}, {"messages": D(-14)}, D(6))


def test_r5_a_refund_to_an_unlimited_pool_gives_back_credits_at_the_cost() -> None:
    """R5, CS1: given an unlimited credit pool that counted 20 credits, when 2 words at 2.5
    credits each are refunded, then the pool gives back 5 credits (not 0.8)."""
    pool = attrs.evolve(row("credits", unlimited=True), unlimited_usage=D(20))
    result = deduct(ordered([pool], "words", {"credits": "2.5"}), D(-2), "cap", T0)
    assert result.changed[pool.id].unlimited_usage == D(15)
    assert result.applied == {"credits": D(-5)}


def test_cs1_a_row_with_no_room_does_not_convert_what_is_left() -> None:
    """CS1: given a pool at 3 per word at -5 credits, an own row with no room, and a pool at 2
    per word at -100, when 5 words are refunded, then the first pool takes 5 credits, the own
    row nothing, and the second pool the 10 credits left at 2/3: 20/3 rounded once, at the
    engine's precision (a conversion through the own row's units would round twice)."""
    first = row("credits", granted=0, balance=-5)
    own = row(granted=0, balance=0)
    second = row("tokens", granted=0, balance=-100)
    cands = [Candidate(first, D(3)), Candidate(own, D(1)), Candidate(second, D(2))]
    result = deduct(cands, D(-5), "cap", T0)
    with arithmetic():  # the engine's 60 digits (a bare minus would round to 28)
        twenty_thirds = D(10) * 2 / 3
        expected = {"credits": D(-5), "messages": D(0), "tokens": -twenty_thirds}
        balance = D(-100) + twenty_thirds
    assert twenty_thirds == D("6." + "6" * 58 + "7")
    assert result.applied == expected
    assert result.changed[second.id].balance == balance


def test_r5_an_unlimited_pool_counts_credits_at_the_cost() -> None:
    """R5, CS1: given an unlimited credit pool, when 2 words at 2.5 credits are tracked, then
    it counts 5 credits."""
    pool = row("credits", unlimited=True)
    result = deduct(ordered([pool], "words", {"credits": "2.5"}), D(2), "cap", T0)
    assert result.changed[pool.id].unlimited_usage == D(5)
    assert result.applied == {"credits": D(5)}


def test_r6_soonest_expiry_first_also_within_a_row_and_for_fractions() -> None:
    """R6: given a row whose rollovers are 4 (expiring in 20 days, listed first) and 0.5
    (expiring in 2 days), when 1.5 is deducted, then the 0.5 goes first and 1 comes from the
    4: the row's own balance is untouched."""
    later = roll(4, expires_at=T0 + timedelta(days=20))
    soon = roll("0.5", expires_at=T0 + timedelta(days=2))
    a = row(granted=10, rollovers=[later, soon])
    new = deduct(ordered([a]), D("1.5"), "cap", T0).changed[a.id]
    assert [r.balance for r in new.rollovers] == [D(3), D(0)]
    assert new.balance == D(10)


def test_r6_rows_whose_rollovers_give_nothing_are_not_changed() -> None:
    """R6: given row a whose rollover of 2 expires first, and row b with a later rollover of 5
    and a spent one, when exactly 2 is deducted, then only a changes; given a row at 0 with a
    spent rollover and a row with 10, when 3 is deducted, then only the second changes."""
    a = row(granted=10, rollovers=[roll(2, expires_at=T0 + timedelta(days=1))])
    b = row(granted=10, rollovers=[roll(5, expires_at=T0 + timedelta(days=9)), roll(3, 0)])
    assert set(deduct([Candidate(a, D(1)), Candidate(b, D(1))], D(2), "cap", T0).changed) == {a.id}
    spent = row(granted=10, balance=0, rollovers=[roll(3, 0)])
    full = row(granted=10)
    result = deduct([Candidate(spent, D(1)), Candidate(full, D(1))], D(3), "cap", T0)
    assert {r.id: r.balance for r in result.changed.values()} == {full.id: D(7)}


def test_cs1_an_empty_row_does_not_convert_what_is_left() -> None:
    """CS1: given a pool at 3 per word with 5 credits, an own row at 0 and a pool at 2 per word
    with 100, when 5 words are tracked, then the first pool gives 5 credits and the second the
    10 credits left at 2/3: 20/3 rounded once, at the engine's precision."""
    first = row("credits", granted=5)
    own = row(granted=0, balance=0)
    second = row("tokens", granted=100)
    cands = [Candidate(first, D(3)), Candidate(own, D(1)), Candidate(second, D(2))]
    result = deduct(cands, D(5), "cap", T0)
    with arithmetic():
        twenty_thirds = D(10) * 2 / 3
        balance = D(100) - twenty_thirds
    assert result.applied == {"credits": D(5), "messages": D(0), "tokens": twenty_thirds}
    assert result.changed[second.id].balance == balance


def test_r8_pass2_passes_over_a_row_at_its_floor_without_converting() -> None:
    """R8, CS1: given usage-billed rows at 0 (a pool at 3 per word capped at 5 credits, an own
    row capped at 0, a pool at 2 per word uncapped), when 5 words are tracked, then the first
    pool goes to -5, the own row (at its floor) gives nothing and is passed over, and the
    second pool takes the 10 credits left at 2/3, rounded once."""
    first = row("credits", granted=0, billing="usage", max_purchase=5)
    own = row(granted=0, billing="usage", max_purchase=0)
    second = row("tokens", granted=0, billing="usage")
    cands = [Candidate(first, D(3)), Candidate(own, D(1)), Candidate(second, D(2))]
    result = deduct(cands, D(5), "cap", T0)
    with arithmetic():
        twenty_thirds = D(10) * 2 / 3
        expected = {"credits": D(5), "messages": D(0), "tokens": twenty_thirds}
        balance = -twenty_thirds
    assert (result.applied, result.remainder) == (expected, D(0))
    assert result.changed[second.id].balance == balance
    assert own.id not in result.changed


def test_r8_pass2_takes_a_last_fraction_from_the_next_row() -> None:
    """R8: given two usage-billed rows at 0, the first capped at 2, when 2.5 is tracked, then
    the first goes to -2 and the second takes the last 0.5."""
    capped = row(granted=0, billing="usage", max_purchase=2)
    uncapped = row(granted=0, billing="usage")
    result = deduct([Candidate(capped, D(1)), Candidate(uncapped, D(1))], D("2.5"), "cap", T0)
    assert balances_after([capped, uncapped], result.changed) == [D(-2), D("-0.5")]
    assert result.remainder == 0


def test_r6_a_drained_rollover_keeps_its_id_amount_and_dates() -> None:
    """R6: given a rollover of 4 (amount 6) expiring in 20 days, when 1 is deducted, then the
    rollover is the same record with 3 left."""
    ro = roll(6, 4, expires_at=T0 + timedelta(days=20))
    a = row(granted=10, rollovers=[ro])
    new = deduct(ordered([a]), D(1), "cap", T0).changed[a.id]
    assert new.rollovers == (attrs.evolve(ro, balance=D(3)),)
