"""Building RowState objects and ordered candidates directly, for pure-engine tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from autumn_core.catalog import Rollover
from autumn_core.model import RolloverState, RowState
from autumn_core.rules.deduction import Candidate
from autumn_core.rules.order import order_key, sees
from autumn_core.rules.periods import next_boundary

T0 = datetime(2025, 1, 31, 10, 0, tzinfo=UTC)
D = Decimal
_ids = itertools.count(1)


def row(
    feature: str = "messages",
    granted: Any = 0,
    balance: Any = None,
    *,
    id: str | None = None,
    reset: str | None = None,
    reset_count: int = 1,
    anchor: datetime = T0,
    billing: str | None = None,
    max_purchase: Any = None,
    allocated: bool = False,
    add_on: bool = False,
    grant: bool = False,
    unlimited: bool = False,
    entity_id: str | None = None,
    expires_at: datetime | None = None,
    created_at: datetime = T0,
    rollover: Rollover | None = None,
    rollovers: Iterable[RolloverState] = (),
    now: datetime = T0,
) -> RowState:
    """A row as product_rows or balances.grant would make it (grant=True: no product)."""
    g = D(granted)
    return RowState(
        id=id or f"row_{next(_ids):04d}",
        feature_id=feature,
        created_at=created_at,
        granted=g,
        balance=g if balance is None else D(balance),
        cp_id=None if grant else "cp_1",
        product_id=None if grant else "p",
        entity_id=entity_id,
        per_entity=entity_id is not None,
        unlimited=unlimited,
        billing=billing,
        max_purchase=None if max_purchase is None else D(max_purchase),
        allocated=allocated,
        add_on=add_on or grant,
        reset=reset,
        reset_count=reset_count,
        anchor=anchor,
        next_reset_at=next_boundary(anchor, reset, reset_count, now) if reset else None,
        expires_at=expires_at,
        rollover=rollover,
        rollovers=tuple(rollovers),
        included=g,
    )


def roll(amount: Any, balance: Any = None, expires_at: datetime | None = None) -> RolloverState:
    a = D(amount)
    return RolloverState(
        id=f"ro_{next(_ids):04d}",
        amount=a,
        balance=a if balance is None else D(balance),
        expires_at=expires_at,
        created_at=T0 - timedelta(days=1),
    )


def ordered(
    rows: Iterable[RowState],
    feature: str = "messages",
    costs: Mapping[str, Any] | None = None,
    *,
    entity_id: str | None = None,
    reverse: bool = False,
) -> list[Candidate]:
    """The candidates of a deduction of ``feature`` in deduction order (K2, O1-O10)."""
    pools = {k: D(v) for k, v in (costs or {}).items()}
    keyed = []
    for r in rows:
        if not sees(r, entity_id):
            continue
        if r.feature_id == feature:
            keyed.append((order_key(r, own=True, entity_id=entity_id, reverse=reverse), r, D(1)))
        elif r.feature_id in pools:
            keyed.append(
                (
                    order_key(r, own=False, entity_id=entity_id, reverse=reverse),
                    r,
                    pools[r.feature_id],
                )
            )
    keyed.sort(key=lambda t: t[0])
    return [Candidate(r, c) for _, r, c in keyed]


def balances_after(rows: list[RowState], changed: Mapping[str, RowState]) -> list[Decimal]:
    """Each row's balance after a deduction, in the order the rows were given."""
    return [changed.get(r.id, r).balance for r in rows]
