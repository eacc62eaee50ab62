"""Pricing arithmetic: billable units, tiers, proration and money rounding (docs/rules.md P1-P12).

Pure functions of catalog items, quantities and instants. Money is ``Decimal`` in major units;
every invoice line is rounded half-up to the cent (P11) and a total is the sum of its lines.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from autumn_core.catalog import INF, Item
from autumn_core.model import ZERO

CENT = Decimal("0.01")


def money(amount: Decimal) -> Decimal:
    """P11: half-up to the currency's minor unit (cents; the engine bills one currency)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP) + ZERO  # "+ 0" turns -0.00 into 0.00


def billable_units(units: Decimal, billing_units: Decimal) -> Decimal:
    """P1: round up to a whole number of ``billing_units`` (2,300 in packs of 500 -> 2,500)."""
    if units <= 0:
        return ZERO
    return Decimal(math.ceil(units / billing_units)) * billing_units


def tiered_amount(item: Item, units: Decimal) -> Decimal:
    """P2-P4: the (unrounded) price of ``units`` billable units of a priced item.

    ``amount`` is per ``billing_units`` units, so the per-unit rate is amount / billing_units.
    """
    if units <= 0:
        return ZERO
    bu = item.billing_units
    if item.price is not None:
        return units * item.price / bu
    tiers = item.tiers or ()
    if item.tier_mode == "volume":
        # P4: the whole quantity at the rate of the tier it falls in (up_to inclusive) + flat.
        for tier in tiers:
            if units <= tier.up_to:
                return units * tier.amount / bu + tier.flat_amount
        return ZERO  # unreachable: the catalog ends tiers with INF
    # P3: graduated, each band at its own rate.
    total = ZERO
    lower = ZERO
    for tier in tiers:
        upper = units if tier.up_to == INF else min(units, tier.up_to)
        if upper <= lower:
            break
        total += (upper - lower) * tier.amount / bu
        lower = tier.up_to
    return total


def usage_amount(item: Item, overage: Decimal) -> Decimal:
    """P1, P5: pay-per-use overage, rounded up to billing units, priced through the tiers."""
    return tiered_amount(item, billable_units(overage, item.billing_units))


def packs_amount(item: Item, packs: int | Decimal) -> Decimal:
    """P6, Q3: prepaid packs, priced over the purchased units."""
    return tiered_amount(item, Decimal(packs) * item.billing_units)


def seats_amount(item: Item, seats: Decimal) -> Decimal:
    """P7: paid seats (units beyond included on a usage-billed allocated item)."""
    return tiered_amount(item, billable_units(seats, item.billing_units))


def prorate(
    amount: Decimal, start: datetime | None, end: datetime | None, now: datetime
) -> Decimal:
    """``amount`` x the unused fraction of [start, end) at ``now`` (unrounded)."""
    if start is None or end is None or end <= start:
        return ZERO
    left = max(0, round((end - now).total_seconds()))
    total = round((end - start).total_seconds())
    if left >= total:
        return amount
    # Multiply first so that $20 x 15/30 is exactly $10.
    return amount * Decimal(left) / Decimal(total)
