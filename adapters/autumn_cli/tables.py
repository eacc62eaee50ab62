"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs


@attrs.frozen
class Money:
    """An amount of money: always printed with two decimals."""

    amount: Decimal

    def __str__(self) -> str:
        return f"{self.amount:,.2f}"


def money(value: Decimal | int | None) -> Money | None:
    return None if value is None else Money(Decimal(value))


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        # Quantities keep their own precision (0.5 messages, 1,250 messages), without noise.
        if value == value.to_integral_value():
            return f"{value:,.0f}"
        return f"{value.normalize():,f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [title, line]
    out.append(" " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    out.append(line)
    for row in text_rows:
        out.append(" " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if not text_rows:
        out.append("(none)")
    return "\n".join(out) + "\n"
