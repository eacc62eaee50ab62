"""Deduction order O1-O10 (DOMAIN.md §11) and what a subject sees (EN6), on the pure engine."""

from __future__ import annotations

from datetime import timedelta

from autumn_core.rules.deduction import deduct
from autumn_core.rules.order import sees
from tests.engine.helpers import T0, D, balances_after, ordered, row


def ids(cands: list) -> list[str]:  # type: ignore[type-arg]
    return [c.row.id for c in cands]


def test_section_11_example_daily_then_monthly_then_grant() -> None:
    """§11: daily 10, monthly 300, a grant of 50: track(15) -> daily 0, monthly 295, grant 50."""
    # given
    grant = row(granted=50, grant=True, id="grant")
    monthly = row(granted=300, reset="month", id="monthly")
    daily = row(granted=10, reset="day", id="daily")
    rows = [grant, monthly, daily]
    # when
    result = deduct(ordered(rows), D(15), "cap", T0)
    # then
    assert balances_after(rows, result.changed) == [D(50), D(295), D(0)]
    assert result.applied == {"messages": D(15)}
    assert result.remainder == 0


def test_o1_entity_rows_first_with_entity_id_customer_rows_first_without() -> None:
    """O1: with entity_id the entity's rows lead; without it customer-level rows lead."""
    ent = row(granted=5, entity_id="e1", id="ent")
    cus = row(granted=5, id="cus")
    assert ids(ordered([cus, ent], entity_id="e1")) == ["ent", "cus"]
    assert ids(ordered([ent, cus])) == ["cus", "ent"]


def test_o2_own_rows_before_credit_rows_whatever_their_intervals() -> None:
    """O2: the feature's own rows come before credit-system rows (CS3)."""
    own = row("action1", granted=5, id="own")  # no reset
    credits = row("credits", granted=5, reset="minute", id="credits")
    assert ids(ordered([credits, own], "action1", {"credits": 1})) == ["own", "credits"]


def test_o3_unlimited_first() -> None:
    """O3: an unlimited row sorts before every other own row."""
    limited = row(granted=5, reset="day", id="limited")
    unlimited = row(unlimited=True, id="unl")
    assert ids(ordered([limited, unlimited])) == ["unl", "limited"]


def test_o4_rows_with_a_reset_first_and_reverse_flips_it() -> None:
    """O4 and reverse_deduction_order: resetting rows before non-resetting ones, or after."""
    never = row(granted=5, id="never")
    monthly = row(granted=5, reset="month", id="monthly")
    assert ids(ordered([never, monthly])) == ["monthly", "never"]
    assert ids(ordered([monthly, never], reverse=True)) == ["never", "monthly"]


def test_o5_shorter_interval_first_times_reset_count_and_reverse() -> None:
    """O5: minute < hour < day < week < month < quarter < semi_annual < year, x reset_count."""
    names = ["year", "semi_annual", "quarter", "month", "week", "day", "hour", "minute"]
    rows = [row(granted=1, reset=n, id=n) for n in names]
    two_weeks = row(granted=1, reset="week", reset_count=2, id="2w")
    five_weeks = row(granted=1, reset="week", reset_count=5, id="5w")
    assert ids(ordered([*rows, two_weeks, five_weeks])) == [
        "minute",
        "hour",
        "day",
        "week",
        "2w",
        "month",  # 30 d
        "5w",  # 35 d
        "quarter",
        "semi_annual",
        "year",
    ]
    assert ids(ordered(rows, reverse=True)) == names


def test_o6_earlier_expiry_first_none_last() -> None:
    """O6: the earlier expires_at first, rows that never expire last."""
    never = row(granted=1, grant=True, id="never")
    late = row(granted=1, grant=True, expires_at=T0 + timedelta(days=9), id="late")
    soon = row(granted=1, grant=True, expires_at=T0 + timedelta(days=1), id="soon")
    assert ids(ordered([never, late, soon])) == ["soon", "late", "never"]


def test_o7_entity_rows_by_entity_id_lexicographically() -> None:
    """O7/D12: per-entity rows go by entity id; "a10" < "a9" as strings."""
    rows = [row(granted=1, entity_id=e, id=e) for e in ["b", "a9", "a10"]]
    assert ids(ordered(rows)) == ["a10", "a9", "b"]


def test_o8_main_before_add_on_and_grants_rank_with_add_ons() -> None:
    """O8: main product rows before add-on rows; a grant ranks with add-ons (then O10)."""
    grant = row(granted=1, grant=True, id="grant", created_at=T0)
    addon = row(granted=1, add_on=True, id="addon", created_at=T0 + timedelta(seconds=1))
    main = row(granted=1, id="main", created_at=T0 + timedelta(seconds=2))
    assert ids(ordered([grant, addon, main])) == ["main", "grant", "addon"]


def test_o9_free_and_prepaid_before_usage_billed() -> None:
    """O9: free and prepaid rows come before usage-billed rows."""
    usage = row(granted=1, billing="usage", id="usage", created_at=T0)
    prepaid = row(granted=1, billing="prepaid", id="prepaid", created_at=T0 + timedelta(seconds=1))
    free = row(granted=1, id="free", created_at=T0 + timedelta(seconds=2))
    # Free and prepaid tie on O9, so O10 (age) orders them.
    assert ids(ordered([usage, prepaid, free])) == ["prepaid", "free", "usage"]


def test_o10_older_first_then_row_id() -> None:
    """O10: the older created_at first, then the row id."""
    young = row(granted=1, id="a", created_at=T0 + timedelta(seconds=1))
    old = row(granted=1, id="z", created_at=T0)
    same_b = row(granted=1, id="b", created_at=T0 + timedelta(seconds=1))
    assert ids(ordered([same_b, young, old])) == ["z", "a", "b"]


def test_o1_beats_o2_customer_credit_rows_before_entity_own_rows() -> None:
    """O1 outranks O2: without entity_id, customer-level pool rows precede per-entity own rows."""
    ent_own = row("action1", granted=1, entity_id="e", id="ent_own")
    cus_pool = row("credits", granted=1, id="cus_pool")
    assert ids(ordered([ent_own, cus_pool], "action1", {"credits": 1})) == ["cus_pool", "ent_own"]


def test_en6_views() -> None:
    """EN6: an entity sees its rows and the customer's; the customer sees every row."""
    cus, mine, other = row(), row(entity_id="a"), row(entity_id="b")
    assert [sees(r, "a") for r in (cus, mine, other)] == [True, True, False]
    assert [sees(r, None) for r in (cus, mine, other)] == [True, True, True]
