"""``customer.products.updated`` events from what a unit of work did to a customer's products
(docs/rules.md EO6).

The unit compares each customer's products when it flushes with those it loaded, so every use
case that changes them (attach, cancel, uncancel, renewals, trial ends, scheduled switches,
expiries, provider events, entity deletes) reports its change without knowing about events, and
lazy work reports its change when the write that applies it commits. Like Autumn, one event per
changed product, each with the ``scenario`` that changed it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import attrs

from autumn_core.app.context import Context
from autumn_core.model import ProductState
from autumn_core.outbound import millis
from autumn_core.rules.classify import is_upgrade

#: (scenario, the product after the change, its status before, or None when it is new)
Change = tuple[str, ProductState, str | None]


def product_changes(
    ctx: Context, before: Sequence[ProductState], after: Sequence[ProductState], now: datetime
) -> list[Change]:
    """The changes from ``before`` to ``after``, in the order of ``after``."""
    old = {p.instance_id: p for p in before}
    kept = {p.instance_id for p in after}
    # A product dropped from the customer ended (a live one) or was unscheduled.
    removed = [
        attrs.evolve(p, status="expired") if p.status != "scheduled" else p
        for p in before
        if p.instance_id not in kept and p.status != "expired"
    ]
    ended = [
        p
        for p in after
        if p.status == "expired" and p.instance_id in old and old[p.instance_id].status != "expired"
    ]
    ended += [p for p in removed if p.status == "expired"]
    out: list[Change] = []
    for p in after:
        prev = old.get(p.instance_id)
        scenario = _scenario(ctx, prev, p, ended)
        if scenario is not None:
            out.append((scenario, p, None if prev is None else prev.public_status(now)))
    for p in removed:
        prev = old[p.instance_id]
        scenario = "cancel" if p.status == "scheduled" else "expired"
        out.append((scenario, p, prev.public_status(now)))
    return out


def _scenario(
    ctx: Context, prev: ProductState | None, p: ProductState, ended: Sequence[ProductState]
) -> str | None:
    if prev is None:
        if p.status == "scheduled":
            return "scheduled"
        if p.status == "expired":
            return None  # born ended (a one-off used up at once): nothing to announce
        replaced = next((e for e in ended if _same_slot(e, p)), None)
        if replaced is None:
            return "new"
        return "upgrade" if _is_upgrade(ctx, replaced, p) else "downgrade"
    if p.status != prev.status:
        if p.status == "expired":
            return "expired"
        if p.status == "past_due":
            return "past_due"
        return "new" if prev.status == "scheduled" else "active"
    if p.canceled_at != prev.canceled_at or p.ends_at != prev.ends_at:
        return "cancel" if p.canceled_at is not None or p.ends_at is not None else "renew"
    if p.quantities != prev.quantities or p.pending_quantities != prev.pending_quantities:
        return "update_prepaid_quantity"
    return None


def _same_slot(ended: ProductState, new: ProductState) -> bool:
    """The ended product is the main product of the group and subject ``new`` replaces."""
    return (
        not ended.add_on
        and not new.add_on
        and ended.group == new.group
        and ended.entity_id == new.entity_id
    )


def _is_upgrade(ctx: Context, old: ProductState, new: ProductState) -> bool:
    old_def = ctx.registry.product(old.product_id, old.version)
    new_def = ctx.registry.product(new.product_id, new.version)
    if old_def is None or new_def is None:
        return True
    return is_upgrade(old_def, new_def, ctx.registry.feature_types)


def updated_product(ctx: Context, p: ProductState, now: datetime) -> dict[str, Any]:
    """The product as the event shows it (times in milliseconds, as Autumn's API)."""
    definition = ctx.registry.product(p.product_id, p.version)
    return {
        "id": p.product_id,
        "name": definition.name if definition is not None else p.product_id,
        "version": p.version,
        "group": p.group,
        "is_add_on": p.add_on,
        "status": p.public_status(now),
        "quantities": dict(p.quantities),
        "started_at": _ms(p.started_at),
        "current_period_start": _ms(p.current_period_start),
        "current_period_end": _ms(p.current_period_end),
        "trial_ends_at": _ms(p.trial_ends_at),
        "canceled_at": _ms(p.canceled_at),
        "expires_at": _ms(p.ends_at),
    }


def change_events(
    ctx: Context, before: Sequence[ProductState], after: Sequence[ProductState], now: datetime
) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(entity id, data) of each ``customer.products.updated`` event the change makes."""
    for scenario, p, previous in product_changes(ctx, before, after, now):
        yield (
            p.entity_id,
            {
                "scenario": scenario,
                "updated_product": updated_product(ctx, p, now),
                "previous_status": previous,
            },
        )


def _ms(at: datetime | None) -> int | None:
    return None if at is None else millis(at)
