"""Making a product live on a subject: its CustomerProduct record and its fresh rows (A5, EN3, DF1)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import attrs

from autumn_core.app.context import new_id
from autumn_core.app.unit import Unit
from autumn_core.catalog import Product
from autumn_core.model import CustomerState, ProductState, RowState
from autumn_core.rules.rows import product_rows


def new_product_state(
    unit: Unit,
    product: Product,
    version: int,
    *,
    entity_id: str | None,
    status: str = "active",
    quantities: Mapping[str, Decimal] | None = None,
    trial_ends_at: datetime | None = None,
    started_at: datetime | None = None,
) -> ProductState:
    now = unit.now
    start = started_at or now
    return ProductState(
        instance_id=new_id("cp"),
        product_id=product.id,
        version=version,
        status=status,
        created_at=now,
        entity_id=entity_id,
        add_on=product.add_on,
        default=product.default,
        group=product.group,
        one_off=product.is_one_off,
        free=product.is_free,
        quantities=dict(quantities or {}),
        started_at=start,
        trial_ends_at=trial_ends_at,
        billing_anchor=start,
        reset_anchor=start,
    )


def rows_for(
    unit: Unit, state: CustomerState, product: Product, cp: ProductState, *, reset_anchor: datetime
) -> list[RowState]:
    return product_rows(
        product,
        cp,
        unit.ctx.registry.feature_types,
        state.entities,
        unit.now,
        reset_anchor=reset_anchor,
        new_id=lambda: new_id("row"),
    )


def activate(
    unit: Unit,
    state: CustomerState,
    product: Product,
    cp: ProductState,
    *,
    reset_anchor: datetime | None = None,
) -> CustomerState:
    """Add ``cp`` (already live) with fresh rows to the customer."""
    rows = rows_for(
        unit, state, product, cp, reset_anchor=reset_anchor or cp.reset_anchor or unit.now
    )
    return attrs.evolve(state, products=(*state.products, cp), rows=(*state.rows, *rows))


def attach_defaults(unit: Unit, state: CustomerState) -> CustomerState:
    """DF1: one default product per group, at customer scope, in the creating transaction."""
    from autumn_core.rules.periods import trial_end

    registry = unit.ctx.registry
    for product in unit.ctx.catalog.products:
        if not product.default:
            continue
        trial_ends_at = None
        if product.free_trial is not None:
            trial_ends_at = trial_end(
                unit.now, product.free_trial.length, product.free_trial.duration
            )
            unit.tx.claim_trial(product.id, state.pk, None, None)
        version = registry.latest[product.id]
        cp = new_product_state(unit, product, version, entity_id=None, trial_ends_at=trial_ends_at)
        if product.is_recurring_paid:
            anchor = trial_ends_at or unit.now
            cp = attrs.evolve(
                cp,
                billing_anchor=anchor,
                current_period_start=unit.now,
                current_period_end=anchor,
            )
        state = activate(unit, state, product, cp)
    return state
