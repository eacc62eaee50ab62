"""Attach (foundation scope): free products, add-ons and one-offs stacking, group replacement.

The lifecycle layer extends this module with paid products, trials, checkout and proration.
"""

from __future__ import annotations

from typing import Any

import attrs

from autumn_core.app.provisioning import activate, new_product_state
from autumn_core.app.unit import Unit
from autumn_core.app.usage import check_customer_ref, check_entity_ref
from autumn_core.app.views import product_view
from autumn_core.errors import InvalidRequest, ProductAlreadyAttached, ProductNotFound
from autumn_core.results import AttachResult, CustomerData


def attach(
    unit: Unit,
    customer_id: Any,
    product_id: Any,
    *,
    entity_id: Any = None,
    customer_data: CustomerData | None = None,
) -> AttachResult:
    check_customer_ref(customer_id)
    check_entity_ref(entity_id)
    product = unit.ctx.registry.product(product_id) if isinstance(product_id, str) else None
    if product is None:
        raise ProductNotFound(f"product {product_id!r} does not exist")
    if not product.is_free:
        raise InvalidRequest(
            f"product {product.id!r} is paid; paid attach needs the lifecycle layer"
        )
    state = unit.get_or_create(customer_id, customer_data)
    unit.entity_check(state, entity_id)
    now = unit.now
    version = unit.ctx.registry.latest[product.id]
    if product.add_on or product.is_one_off:
        scenario = "add_on" if product.add_on else "one_off"
    else:
        current = [
            p
            for p in state.products
            if p.is_live and p.is_main and p.group == product.group and p.entity_id == entity_id
        ]
        if any(p.product_id == product.id for p in current):
            raise ProductAlreadyAttached(
                f"customer {state.id!r} already has product {product.id!r}"
            )
        scenario = "upgrade" if current else "new"
        if current:
            ids = {p.instance_id for p in current}
            state = attrs.evolve(
                state,
                products=tuple(
                    attrs.evolve(p, status="expired", canceled_at=now, ends_at=now)
                    if p.instance_id in ids
                    else p
                    for p in state.products
                    if not (
                        p.status == "scheduled"
                        and p.group == product.group
                        and p.entity_id == entity_id
                    )
                ),
            )
    cp = new_product_state(unit, product, version, entity_id=entity_id)
    state = unit.put(activate(unit, state, product, cp))
    return AttachResult(scenario=scenario, product=product_view(unit.ctx, cp, now))
