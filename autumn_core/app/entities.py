"""Entities: sub-customers tied to an allocated feature (docs/rules.md §5)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from autumn_core.app.context import new_id
from autumn_core.app.holds import forget_entity
from autumn_core.app.unit import Unit
from autumn_core.app.usage import candidates, check_customer_ref, known_feature, replace_rows
from autumn_core.app.views import live_rows
from autumn_core.errors import (
    EntityAlreadyExists,
    EntityNotFound,
    InsufficientBalance,
    InvalidRequest,
)
from autumn_core.model import CustomerState, EntityState
from autumn_core.results import CustomerData
from autumn_core.rules.deduction import deduct
from autumn_core.rules.rows import product_rows
from autumn_core.values import check_id, check_optional_str

ONE_SEAT = Decimal(1)


def create_entity(
    unit: Unit,
    customer_id: Any,
    entity_id: Any,
    feature_id: Any,
    name: Any,
    customer_data: CustomerData | None = None,
) -> CustomerState:
    ctx = unit.ctx
    check_customer_ref(customer_id)
    check_id(entity_id, "entity id")
    feature = known_feature(ctx, feature_id)
    if feature.type != "allocated":
        raise InvalidRequest(
            f"entities need an allocated feature; {feature.id!r} is {feature.type}"
        )
    check_optional_str(name, "name")
    state = unit.get_or_create(customer_id, customer_data)
    if state.entity(entity_id) is not None:
        raise EntityAlreadyExists(f"entity {entity_id!r} already exists for customer {state.id!r}")
    now = unit.now
    # EN2: one unit of usage on the customer-level rows, as a capped track without an event.
    cands = candidates(ctx, live_rows(ctx, state, now), feature.id, None, customer_level_only=True)
    result = deduct(cands, ONE_SEAT, "cap", now)
    if result.remainder > 0 and cands:
        raise InsufficientBalance(
            f"customer {state.id!r} cannot add entity {entity_id!r}: {feature.id!r} is at its limit"
        )
    state = replace_rows(state, result.changed)
    entity = EntityState(entity_id, feature.id, now, name)
    state = attrs.evolve(state, entities=(*state.entities, entity))
    # EN3: per-entity rows of every live product with a per-entity item of this feature.
    new_rows = []
    for cp in state.products:
        if not cp.is_live:
            continue
        product = ctx.registry.product(cp.product_id, cp.version)
        if product is None or not any(i.per_entity == feature.id for i in product.items):
            continue
        new_rows += product_rows(
            product,
            cp,
            ctx.registry.feature_types,
            [entity],
            now,
            reset_anchor=cp.reset_anchor or now,
            new_id=lambda: new_id("row"),
            only_entity=entity_id,
        )
    state = attrs.evolve(state, rows=(*state.rows, *new_rows))
    seat_rows = [rid for rid, r in result.changed.items() if r.billing == "usage"]
    if seat_rows:
        from autumn_core.app.seats import settle_seats

        state = settle_seats(unit, state, seat_rows)
    return unit.put(state)


def delete_entity(unit: Unit, customer_id: Any, entity_id: Any) -> None:
    ctx = unit.ctx
    check_customer_ref(customer_id)
    check_id(entity_id, "entity id")
    state = unit.get(customer_id)
    entity = state.entity(entity_id)
    if entity is None:
        raise EntityNotFound(f"entity {entity_id!r} does not exist for customer {state.id!r}")
    now = unit.now
    state = forget_entity(unit, state, entity_id)
    cands = candidates(
        ctx, live_rows(ctx, state, now), entity.feature_id, None, customer_level_only=True
    )
    result = deduct(cands, -ONE_SEAT, "cap", now)
    state = replace_rows(state, result.changed)
    seat_rows = [rid for rid, r in result.changed.items() if r.billing == "usage"]
    if seat_rows:
        from autumn_core.app.seats import settle_seats

        state = settle_seats(unit, state, seat_rows)
    products = tuple(
        attrs.evolve(p, status="expired", ends_at=now, canceled_at=p.canceled_at or now)
        if p.entity_id == entity_id and p.status != "expired"
        else p
        for p in state.products
    )
    state = attrs.evolve(
        state,
        products=products,
        rows=tuple(r for r in state.rows if r.entity_id != entity_id),
        entities=tuple(e for e in state.entities if e.id != entity_id),
    )
    unit.put(state)
