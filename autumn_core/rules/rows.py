"""Making balance rows from items, and resetting them (docs/rules.md 2.5, S2-S6, RO1-RO3)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

import attrs

from autumn_core.catalog import Item, Product
from autumn_core.model import ZERO, EntityState, ProductState, RolloverState, RowState
from autumn_core.rules.periods import add_months, next_boundary


def prepaid_packs(item: Item, total_units: Decimal | None) -> int:
    """Q1: packs = ceil(max(0, q - included) / billing_units)."""
    if total_units is None:
        return 0
    extra = max(ZERO, total_units - (item.included or ZERO))
    return math.ceil(extra / item.billing_units)


def starting_balance(item: Item, total_units: Decimal | None) -> Decimal:
    if item.unlimited:
        return ZERO
    included = item.included or ZERO
    if item.is_prepaid:
        return included + prepaid_packs(item, total_units) * item.billing_units
    return included


def product_rows(
    product: Product,
    cp: ProductState,
    feature_types: Mapping[str, str],
    entities: Iterable[EntityState],
    now: datetime,
    *,
    reset_anchor: datetime,
    new_id: Callable[[], str],
    only_entity: str | None = None,
) -> list[RowState]:
    """The fresh rows of a newly active customer product (A5).

    ``only_entity`` builds just the per-entity rows of one (new) entity (EN3).
    """
    rows: list[RowState] = []
    entity_list = list(entities)
    for index, item in enumerate(product.items):
        ftype = feature_types[item.feature_id]
        if ftype == "boolean":
            continue
        if item.per_entity is not None:
            owners = [
                e.id
                for e in entity_list
                if e.feature_id == item.per_entity
                and (cp.entity_id is None or e.id == cp.entity_id)
                and (only_entity is None or e.id == only_entity)
            ]
            per_entity = True
        else:
            if only_entity is not None:
                continue
            owners = [cp.entity_id]  # type: ignore[list-item]
            per_entity = False
        start = starting_balance(item, cp.quantities.get(item.feature_id))
        next_reset = (
            next_boundary(reset_anchor, item.reset, item.reset_count, now) if item.reset else None
        )
        for owner in owners:
            rows.append(
                RowState(
                    id=new_id(),
                    feature_id=item.feature_id,
                    created_at=now,
                    granted=start,
                    balance=start,
                    cp_id=cp.instance_id,
                    product_id=cp.product_id,
                    item_index=index,
                    entity_id=owner,
                    per_entity=per_entity,
                    unlimited=item.unlimited,
                    billing=item.billing,
                    max_purchase=item.max_purchase if item.is_usage else None,
                    allocated=ftype == "allocated",
                    add_on=not cp.is_main,
                    reset=item.reset,
                    reset_count=item.reset_count,
                    anchor=reset_anchor,
                    next_reset_at=next_reset,
                    renews_with_product=bool(
                        product.is_recurring_paid
                        and item.is_priced
                        and item.interval != "one_off"
                        and item.reset == item.interval
                        and item.reset_count == item.interval_count
                    ),
                    rollover=item.rollover,
                    included=item.included or ZERO,
                )
            )
    return rows


def rollover_cap(row: RowState, starting: Decimal) -> Decimal | None:
    cfg = row.rollover
    if cfg is None:
        return ZERO
    if cfg.max is not None:
        return cfg.max
    if cfg.max_percent is not None:
        return (starting * cfg.max_percent / 100).to_integral_value(rounding=ROUND_FLOOR)
    return None


def cap_rollovers(
    rollovers: Iterable[RolloverState], cap: Decimal | None
) -> tuple[RolloverState, ...]:
    """Trim the oldest (soonest-expiring) first until the total fits; drop empty ones (RO2)."""
    items = sorted(rollovers, key=lambda r: (r.expires_at is None, r.expires_at, r.created_at))
    if cap is not None:
        excess = sum((r.balance for r in items), ZERO) - cap
        trimmed = []
        for r in items:
            if excess > 0:
                cut = min(excess, r.balance)
                excess -= cut
                r = attrs.evolve(r, amount=max(ZERO, r.amount - cut), balance=r.balance - cut)
            trimmed.append(r)
        items = trimmed
    return tuple(r for r in items if r.balance > 0)


def reset_row(
    row: RowState,
    now: datetime,
    *,
    new_id: Callable[[], str],
    persist_overage: bool = False,
    starting: Decimal | None = None,
    next_reset_at: datetime | None = None,
) -> RowState:
    """Refill a row to its starting balance, keeping a rollover of what was left (S5, RO1-RO3).

    ``starting`` overrides the refill amount (a renewal applying a pending quantity);
    ``next_reset_at`` overrides the recomputed boundary (a renewal aligned on the period).
    """
    start = row.granted if starting is None else starting
    old_boundary = row.next_reset_at or now
    live = tuple(r for r in row.rollovers if r.expires_at is None or r.expires_at > now)
    if row.rollover is not None and row.balance > 0:
        months = row.rollover.expires_after_months
        expires = add_months(old_boundary, months) if months is not None else None
        live = (
            *live,
            RolloverState(new_id(), row.balance, row.balance, expires, old_boundary),
        )
    if row.rollover is not None:
        live = cap_rollovers(live, rollover_cap(row, start))
    balance = start
    if persist_overage and row.balance < 0:
        balance = start + row.balance
    if next_reset_at is None and row.reset is not None and row.anchor is not None:
        next_reset_at = next_boundary(row.anchor, row.reset, row.reset_count, now)
    return attrs.evolve(
        row, granted=start, balance=balance, rollovers=live, next_reset_at=next_reset_at
    )


def due_for_free_reset(row: RowState, now: datetime) -> bool:
    """S3/S6: a row resets lazily when due, unless it renews with its product or never resets."""
    return (
        row.next_reset_at is not None
        and row.next_reset_at <= now
        and not row.renews_with_product
        and not row.unlimited
        and not row.allocated
    )
