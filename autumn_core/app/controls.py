"""Setting billing controls on customers and entities (docs/rules.md BC1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from autumn_core.app.context import Context
from autumn_core.app.unit import Unit
from autumn_core.controls import (
    KEYS,
    NO_CONTROLS,
    BillingControls,
    merge_controls,
    parse_controls,
    parse_patch,
)
from autumn_core.errors import EntityNotFound, FeatureNotFound, InvalidRequest
from autumn_core.model import CustomerState
from autumn_core.results import UNSET


def check_controls(ctx: Context, value: Any, *, entity: bool = False) -> BillingControls:
    """A whole set of controls (create): checked, every feature in the catalog."""
    if value is UNSET:
        return NO_CONTROLS
    controls = parse_controls(value, entity=entity)
    check_features(ctx, controls)
    return controls


def check_patch(ctx: Context, value: Any, *, entity: bool = False) -> Mapping[str, Any]:
    """An update's controls: the lists it replaces (all of them unless a dict names some)."""
    if value is UNSET:
        return {}
    patch = parse_patch(value, entity=entity)
    check_features(ctx, BillingControls(**{k: patch.get(k, ()) for k in KEYS}))
    return patch


def whole(controls: BillingControls) -> Mapping[str, Any]:
    """The patch that replaces every list with those of ``controls``."""
    return {k: getattr(controls, k) for k in KEYS}


def check_features(ctx: Context, controls: BillingControls) -> None:
    """Controls name metered features of the catalog (a boolean feature has no balance)."""
    for key in KEYS:
        for entry in getattr(controls, key):
            feature_id = entry.feature_id
            if feature_id is None:
                continue
            feature = ctx.catalog.feature(feature_id)
            if feature is None:
                raise FeatureNotFound(
                    f"billing_controls.{key} names feature {feature_id!r}, which does not exist"
                )
            if feature.type == "boolean":
                raise InvalidRequest(
                    f"billing_controls.{key} names {feature_id!r}, a boolean feature "
                    "(controls apply to metered features)"
                )


def set_customer_controls(state: CustomerState, patch: Mapping[str, Any]) -> CustomerState:
    if not patch:
        return state
    merged = merge_controls(state.billing_controls, patch)
    if merged == state.billing_controls:
        return state
    return attrs.evolve(state, billing_controls=merged)


def update_entity(unit: Unit, customer_id: Any, entity_id: str, patch: dict[str, Any]) -> str:
    """``entities.update``: the entity's name and controls; returns the customer's pk."""
    state = unit.get(customer_id)
    entity = state.entity(entity_id)
    if entity is None:
        raise EntityNotFound(f"entity {entity_id!r} does not exist for customer {state.id!r}")
    new = entity
    if "name" in patch:
        new = attrs.evolve(new, name=patch["name"])
    controls = patch.get("billing_controls")
    if controls:
        new = attrs.evolve(new, billing_controls=merge_controls(new.billing_controls, controls))
    if new != entity:
        entities = tuple(new if e.id == entity_id else e for e in state.entities)
        unit.put(attrs.evolve(state, entities=entities))
    return state.pk
