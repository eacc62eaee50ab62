"""Pricing at its boundaries (P2-P4, P9, P11): tier edges, half-up cents, proration ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from autumn_core import INF, Item, Tier
from autumn_core.rules.pricing import (
    billable_units,
    money,
    packs_amount,
    prorate,
    seats_amount,
    tiered_amount,
    usage_amount,
)

VOLUME = Item.priced(
    "messages",
    tiers=[Tier(100, "0.08"), Tier(1000, "0.06", flat_amount=5), Tier(INF, "0.04")],
    tier_mode="volume",
)
GRADUATED = Item.priced("messages", tiers=[Tier(100, "0.08"), Tier(INF, "0.05")])


@pytest.mark.parametrize(
    ("units", "amount"),
    [(100, "8.00"), (101, "11.06"), (1000, "65.00"), (1001, "40.04"), (1, "0.08")],
)
def test_volume_tiers_include_their_up_to(units: int, amount: str) -> None:
    """Given volume tiers up to 100 at $0.08 and up to 1,000 at $0.06 + $5, when exactly 100
    (or 1,000) units are priced, then all of them take the tier that ends there."""
    assert money(tiered_amount(VOLUME, D(units))) == D(amount)


@pytest.mark.parametrize(("units", "amount"), [(100, "8.00"), (101, "8.05"), (300, "18.00")])
def test_graduated_tiers_switch_rate_after_up_to(units: int, amount: str) -> None:
    """Given graduated tiers (first 100 at $0.08, the rest at $0.05), when 100, 101 and 300
    units are priced, then each band is priced at its own rate."""
    assert money(tiered_amount(GRADUATED, D(units))) == D(amount)


def test_nothing_or_less_is_free() -> None:
    assert tiered_amount(VOLUME, D(0)) == 0
    assert tiered_amount(GRADUATED, D(-5)) == 0
    assert usage_amount(Item.priced("m", price=2), D(-1)) == 0


def test_no_units_owe_no_flat_amount_of_a_volume_tier() -> None:
    """Given volume tiers whose first tier carries a $5 flat amount, when no units are priced
    (a period without overage), then nothing is owed: the flat amount comes with units only."""
    flat_first = Item.priced(
        "m", tiers=[Tier(100, "0.08", flat_amount=5), Tier(INF, "0.04")], tier_mode="volume"
    )
    assert tiered_amount(flat_first, D(0)) == D(0)
    assert usage_amount(flat_first, D(0)) == D(0)
    assert tiered_amount(flat_first, D(1)) == D("5.08")


@pytest.mark.parametrize(
    ("amount", "cents"),
    [
        ("0.125", "0.13"),
        ("0.245", "0.25"),
        ("2.675", "2.68"),
        ("0.124999", "0.12"),
        ("-0.125", "-0.13"),
        ("-0.004", "0.00"),
        ("10", "10.00"),
    ],
)
def test_money_rounds_half_up_to_the_cent(amount: str, cents: str) -> None:
    """P11: half a cent rounds up (away from zero), not to the even cent; -0.00 is 0.00."""
    rounded = money(D(amount))
    assert rounded == D(cents)
    assert str(rounded) == cents


def test_billing_units_round_up_to_whole_packs() -> None:
    assert billable_units(D(500), D(500)) == 500
    assert billable_units(D(501), D(500)) == 1000
    assert billable_units(D("0.5"), D(1)) == 1
    assert billable_units(D(0), D(500)) == 0


def test_packs_and_seats_are_priced_per_billing_unit() -> None:
    """Amounts are per ``billing_units`` units: 3 packs of 10 at $4 = $12; 3 seats at $10
    in units of 1 = $30, and 11 seats in units of 5 bill 15."""
    assert packs_amount(Item.priced("credits", price=4, billing_units=10), 3) == D(12)
    assert seats_amount(Item.priced("users", price=10), D(3)) == D(30)
    assert seats_amount(Item.priced("users", price=5, billing_units=5), D(11)) == D(15)


START = datetime(2025, 4, 1, tzinfo=UTC)
END = datetime(2025, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "fraction", "left"),
    [
        (START, D(1), D(20)),
        (START - timedelta(days=1), D(1), D(20)),
        (START + timedelta(days=15), D("0.5"), D(10)),
        (END, D(0), D(0)),
        (END + timedelta(days=1), D(0), D(0)),
        (START + timedelta(days=20), D(1) / D(3), D(20) / D(3)),
    ],
)
def test_proration_of_a_30_day_month(now: datetime, fraction: D, left: D) -> None:
    """P9: the unused fraction of [start, end) at now, clamped to [0, 1]; $20 x 15/30 = $10."""
    assert prorate(D(1), START, END, now) == fraction
    assert prorate(D(20), START, END, now) == left


def test_an_empty_or_unknown_period_prorates_to_nothing() -> None:
    assert prorate(D(20), None, END, START) == 0
    assert prorate(D(20), START, START, START) == 0
    assert prorate(D(20), START, None, START) == 0
    assert prorate(D(20), END, START, START) == 0


def test_tier_amounts_are_per_billing_units() -> None:
    """Tier amounts are per ``billing_units`` units: $2 per 100 up to 1,000, then $1 per 100."""
    graduated = Item.priced(
        "m", billing_units=100, tiers=[Tier(1000, 2), Tier(INF, 1)], tier_mode="graduated"
    )
    volume = Item.priced(
        "m", billing_units=100, tiers=[Tier(1000, 2), Tier(INF, 1)], tier_mode="volume"
    )
    assert tiered_amount(graduated, D(1500)) == D(25)
    assert tiered_amount(volume, D(500)) == D(10)


def test_proration_edges_of_one_second_and_of_an_empty_period() -> None:
    """One second left of a 30-day month is 1/2,592,000 of it, not nothing; a period without
    an end, or one that is empty, prorates to nothing even before it starts."""
    assert prorate(D(2_592_000), START, END, END - timedelta(seconds=1)) == 1
    assert prorate(D(20), START, START, START - timedelta(days=1)) == 0
