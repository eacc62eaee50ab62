"""Catalog terms in words: prices, items, trials (the Products page and the Plans table)."""

from __future__ import annotations

from decimal import Decimal

from autumn_core import INF, Balance, Catalog, Item, Product
from autumn_dashboard.fmt import NONE, money, number, unit_price

_PER = {
    "one_off": "once",
    "week": "/ week",
    "month": "/ month",
    "quarter": "/ quarter",
    "semi_annual": "/ half-year",
    "year": "/ year",
}


def interval(value: str | None, count: int = 1) -> str:
    if value is None:
        return ""
    base = _PER.get(value, f"/ {value}")
    return base if count == 1 else f"every {count} {value}s"


def price_label(product: Product | None, currency: str = "usd") -> str:
    """The base price ("$20.00 / month"), else what the priced items make it ("Usage-based")."""
    if product is None:
        return NONE
    if product.price is not None and product.price.amount != 0:
        return (
            f"{money(product.price.amount, currency)} "
            f"{interval(product.price.interval, product.price.interval_count)}"
        )
    if product.priced_items and not product.is_free:
        if all(i.is_prepaid for i in product.priced_items):
            return "Prepaid packs"
        return "Usage-based"
    return "Free"


def item_label(item: Item, catalog: Catalog, currency: str = "usd") -> str:
    feature = next((f for f in catalog.features if f.id == item.feature_id), None)
    name = (feature.name if feature else None) or item.feature_id
    parts: list[str] = []
    if feature is not None and feature.type == "boolean":
        return f"{name}: on"
    if item.unlimited:
        parts.append(f"Unlimited {name}")
    elif item.included:
        parts.append(f"{number(item.included)} {name}")
    else:
        parts.append(name)
    if item.reset:
        every = item.reset if item.reset_count == 1 else f"{item.reset_count} {item.reset}s"
        parts.append(f"resets every {every}")
    if item.is_priced:
        units = "" if item.billing_units == 1 else f" per {number(item.billing_units)}"
        if item.price is not None:
            parts.append(f"{unit_price(item.price, currency)}{units}")
        elif item.tiers:
            tiers = []
            for t in item.tiers:
                upto = "∞" if t.up_to == INF else number(t.up_to)
                flat = f" + {money(t.flat_amount, currency)}" if t.flat_amount else ""
                tiers.append(f"up to {upto}: {unit_price(t.amount, currency)}{flat}")
            parts.append(f"{item.tier_mode} tiers ({'; '.join(tiers)}){units}")
        parts.append("prepaid" if item.is_prepaid else "pay per use")
        billed = interval(item.interval, item.interval_count).removeprefix("/ ")
        parts.append(f"billed {billed}" if billed == "once" else f"billed per {billed}")
        if item.max_purchase is not None:
            parts.append(f"max {number(item.max_purchase)}")
    if item.per_entity:
        parts.append(f"per {item.per_entity}")
    if item.rollover is not None:
        parts.append("rolls over")
    return " · ".join(p for p in parts if p)


def usage_percent(balance: Balance) -> Decimal:
    """The bar's fill: used of granted, 0..100 (an overage fills it)."""
    if balance.unlimited or balance.granted <= 0:
        pct = Decimal(100) if balance.usage > 0 and not balance.unlimited else Decimal(0)
    else:
        pct = balance.usage / balance.granted * 100
    return max(Decimal(0), min(Decimal(100), pct)).quantize(Decimal("0.1"))
