"""Deduction order (docs/rules.md §11, O1-O10) and which rows a subject sees (EN6)."""

from __future__ import annotations

from datetime import UTC, datetime

from autumn_core.model import RowState
from autumn_core.rules.periods import NOMINAL_SECONDS

_NEVER = datetime.max.replace(tzinfo=UTC)


def sees(row: RowState, entity_id: str | None) -> bool:
    """An entity sees its own rows and the customer's; the customer sees everything (EN6)."""
    return entity_id is None or row.entity_id is None or row.entity_id == entity_id


def order_key(
    row: RowState, *, own: bool, entity_id: str | None, reverse: bool
) -> tuple[object, ...]:
    """Sort key: rows are compared key by key, the first difference decides."""
    if entity_id is not None:
        scope: tuple[int, str] = (0, "") if row.entity_id is not None else (1, "")
    else:
        # Customer-level rows first, then per-entity rows entity by entity (R12, D12).
        scope = (0, "") if row.entity_id is None else (1, row.entity_id)
    has_reset = row.reset is not None
    interval = NOMINAL_SECONDS[row.reset] * row.reset_count if row.reset is not None else 0
    if reverse:
        o4 = 0 if not has_reset else 1
        o5 = -interval
    else:
        o4 = 0 if has_reset else 1
        o5 = interval
    return (
        scope,
        0 if own else 1,
        0 if row.unlimited else 1,
        o4,
        o5,
        row.expires_at or _NEVER,
        row.entity_id or "",
        1 if row.add_on else 0,
        1 if row.billing == "usage" else 0,
        row.created_at,
        row.id,
    )
