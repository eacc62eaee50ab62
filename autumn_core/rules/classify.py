"""Attach classification helpers: the upgrade/downgrade test (docs/rules.md U1-U5).

Pure functions of two product definitions and the catalog's feature types.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from autumn_core.catalog import INTERVAL_MONTHS, Item, Product
from autumn_core.model import ZERO


def _months(interval: str | None, count: int) -> Decimal:
    return INTERVAL_MONTHS.get(interval or "one_off", ZERO) * count


def _is_metered_usage(item: Item, feature_types: Mapping[str, str]) -> bool:
    return item.is_usage and feature_types.get(item.feature_id) != "allocated"


def longest_months(product: Product) -> Decimal:
    """U4: the longest price interval in months (week 0.25 ... year 12, x interval_count)."""
    best = ZERO
    if product.price is not None:
        best = max(best, _months(product.price.interval, product.price.interval_count))
    for item in product.priced_items:
        best = max(best, _months(item.interval, item.interval_count))
    return best


def monthly_total(product: Product, feature_types: Mapping[str, str]) -> Decimal:
    """U5: the monthly-normalised total over the prices that are not metered pay-per-use.

    Each is the base amount, or the first tier amount of a prepaid or seat price, divided by
    its months; a one-off amount counts as is.
    """
    total = ZERO
    parts: list[tuple[Decimal, str | None, int]] = []
    if product.price is not None:
        parts.append((product.price.amount, product.price.interval, product.price.interval_count))
    for item in product.priced_items:
        if _is_metered_usage(item, feature_types):
            continue
        parts.append((item.first_amount(), item.interval, item.interval_count))
    for amount, interval, count in parts:
        months = _months(interval, count)
        total += amount if months == 0 else amount / months
    return total


def is_upgrade(old: Product, new: Product, feature_types: Mapping[str, str]) -> bool:
    """U1-U5, first match wins."""
    if old.is_free and not new.is_free:
        return True  # U1
    if not old.is_free and new.is_free:
        return False  # U1
    if old.is_one_off or new.is_one_off:
        return True  # U2
    priced = [*old.priced_items, *new.priced_items]
    if (
        old.price is None
        and new.price is None
        and all(_is_metered_usage(i, feature_types) for i in priced)
    ):
        return True  # U3
    if longest_months(new) > longest_months(old):
        return True  # U4
    return monthly_total(old, feature_types) <= monthly_total(new, feature_types)  # U5
