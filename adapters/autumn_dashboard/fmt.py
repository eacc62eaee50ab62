"""How numbers, money and instants are shown to people (Jinja filters)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

_CENT = Decimal("0.01")
#: What an absent value shows (an en dash).
NONE = "\u2013"
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}


def number(value: Decimal | int | None) -> str:
    """``1234567.50`` -> ``1,234,567.5``; whole numbers without decimals; None -> an en dash."""
    if value is None:
        return NONE
    d = Decimal(value)
    if d == d.to_integral_value():
        return f"{d.quantize(Decimal(1)):,}"
    return f"{d.normalize():,f}"


def money(value: Decimal | None, currency: str = "usd") -> str:
    """Two decimals, thousands separators, the currency's symbol (or its code)."""
    if value is None:
        return NONE
    d = Decimal(value).quantize(_CENT)
    sign = "-" if d < 0 else ""
    symbol = _SYMBOLS.get(currency.lower())
    body = f"{abs(d):,}"
    return f"{sign}{symbol}{body}" if symbol else f"{sign}{body} {currency.upper()}"


def unit_price(value: Decimal, currency: str = "usd") -> str:
    """A price per unit: two decimals, or as many as it has (``$0.002``), never rounded."""
    d = Decimal(value)
    if d == d.quantize(_CENT):
        return money(d, currency)
    symbol = _SYMBOLS.get(currency.lower())
    body = f"{d.normalize():,f}"
    return f"{symbol}{body}" if symbol else f"{body} {currency.upper()}"


def when(value: datetime | None) -> str:
    """An instant in UTC with the zone shown: ``2025-03-10 09:00 UTC``."""
    if value is None:
        return NONE
    if value.utcoffset():
        value = value.astimezone(UTC)
    return f"{value:%Y-%m-%d %H:%M} UTC"


def day(value: datetime | None) -> str:
    if value is None:
        return NONE
    return value.astimezone(UTC).strftime("%Y-%m-%d")
