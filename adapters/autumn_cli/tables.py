"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return f"{value:,.2f}" if value != value.to_integral_value() else f"{value:,.0f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, bool):
        return "yes" if value else "no"
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
