"""Making a product live on a subject: its CustomerProduct record and its fresh rows (A5, EN3, DF1).

Also the shared transitions of the lifecycle: periods of a recurring product, ending a product
with its successor (DF3), and carrying usage and rollovers into a replacing product (A5, RO6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

import attrs

from autumn_core.app.context import new_id
from autumn_core.app.seats import count_entities
from autumn_core.app.trials import claim as claim_trial
from autumn_core.app.trials import own_trial_claim
from autumn_core.app.unit import Unit
from autumn_core.catalog import Product
from autumn_core.model import ZERO, CustomerState, ProductState, RowState
from autumn_core.rules.periods import next_boundary, trial_end
from autumn_core.rules.rows import cap_rollovers, product_rows, rollover_cap


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


def period_end_from(anchor: datetime, product: Product, at: datetime) -> datetime | None:
    """The end of the billing period containing ``at`` (the first boundary strictly after it)."""
    cycle = product.billing_interval()
    if cycle is None:
        return None
    interval, count = cycle
    return next_boundary(anchor, interval, count, at)


def with_period(
    cp: ProductState,
    product: Product,
    *,
    anchor: datetime,
    start: datetime,
    end: datetime | None = None,
) -> ProductState:
    """Set the billing anchor and current period of a recurring paid product (S1)."""
    if not product.is_recurring_paid:
        return attrs.evolve(cp, current_period_start=None, current_period_end=None)
    return attrs.evolve(
        cp,
        billing_anchor=anchor,
        current_period_start=start,
        current_period_end=end or period_end_from(anchor, product, start),
    )


def with_trial(
    cp: ProductState, product: Product, trial_ends_at: datetime, now: datetime
) -> ProductState:
    """T6/T7/S8: a trial is a first period [now, trial end); the billing anchor is the trial end."""
    cp = attrs.evolve(cp, trial_ends_at=trial_ends_at, reset_anchor=trial_ends_at)
    if product.is_recurring_paid:
        return attrs.evolve(
            cp,
            billing_anchor=trial_ends_at,
            current_period_start=now,
            current_period_end=trial_ends_at,
        )
    return cp


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
    refuse_over_limit: bool = False,
) -> CustomerState:
    """Add ``cp`` (already live) with fresh rows to the customer.

    The customer's live entities count in the new rows where no other row counts them (EN2);
    past ``max_purchase`` an attach is refused (``refuse_over_limit``), due work is not.
    """
    rows = rows_for(
        unit, state, product, cp, reset_anchor=reset_anchor or cp.reset_anchor or unit.now
    )
    rows = [_seed_paid_seats(r) for r in rows]
    state = attrs.evolve(state, products=(*state.products, cp), rows=(*state.rows, *rows))
    state = count_entities(unit, state, into=rows, refuse=refuse_over_limit)
    if not refuse_over_limit:
        # Due work (a switch) also ended rows that counted entities: the rest count them now.
        state = count_entities(unit, state, refuse=False)
    return state


def _seed_paid_seats(row: RowState) -> RowState:
    if row.allocated and row.billing == "usage":
        return attrs.evolve(row, paid_seats=max(ZERO, row.usage - row.included))
    return row


def replace_product(state: CustomerState, cp: ProductState) -> CustomerState:
    return attrs.evolve(
        state,
        products=tuple(cp if p.instance_id == cp.instance_id else p for p in state.products),
    )


def drop_products(state: CustomerState, instance_ids: set[str]) -> CustomerState:
    if not instance_ids:
        return state
    return attrs.evolve(
        state,
        products=tuple(p for p in state.products if p.instance_id not in instance_ids),
        rows=tuple(r for r in state.rows if r.cp_id not in instance_ids),
    )


def scheduled_in(state: CustomerState, group: str, entity_id: str | None) -> list[ProductState]:
    return [
        p
        for p in state.products
        if p.status == "scheduled" and p.is_main and p.group == group and p.entity_id == entity_id
    ]


def live_main_in(state: CustomerState, group: str, entity_id: str | None) -> list[ProductState]:
    return [
        p
        for p in state.products
        if p.is_live and p.is_main and p.group == group and p.entity_id == entity_id
    ]


def free_default(unit: Unit, group: str) -> Product | None:
    """DF3/DF4: the group's free default product, matched by group string."""
    for product in unit.ctx.catalog.products:
        if product.default and product.group == group and product.is_free and not product.add_on:
            return product
    return None


def expire(
    state: CustomerState, cp: ProductState, at: datetime, *, keep_rows: bool = False
) -> CustomerState:
    """The product stops granting access; its rows go (they no longer count anywhere)."""
    ended = attrs.evolve(cp, status="expired", ends_at=at, canceled_at=cp.canceled_at or at)
    state = replace_product(state, ended)
    if keep_rows:
        return state
    return attrs.evolve(state, rows=tuple(r for r in state.rows if r.cp_id != cp.instance_id))


def activate_successor(
    unit: Unit, state: CustomerState, ended: ProductState, at: datetime
) -> CustomerState:
    """DF3: after a live main product ends, its scheduled product, else the free default.

    Add-ons and one-offs never bring anything back (X6); the default itself is not re-attached
    (DF5); defaults are customer-scoped (DF6).
    """
    state = _default_after(unit, state, ended, at)
    # EN2: the entities the ended product's rows counted now count in the rows that remain.
    return count_entities(unit, state, refuse=False)


def _default_after(
    unit: Unit, state: CustomerState, ended: ProductState, at: datetime
) -> CustomerState:
    if not ended.is_main:
        return state
    if scheduled_in(state, ended.group, ended.entity_id):
        return state  # it activates on its own at its start (renewals)
    if live_main_in(state, ended.group, ended.entity_id):
        return state
    if ended.entity_id is not None:
        return state
    default = free_default(unit, ended.group)
    if default is None or default.id == ended.product_id:
        return state
    version = unit.ctx.registry.latest[default.id]
    cp = new_product_state(unit, default, version, entity_id=None, started_at=at)
    return activate(unit, state, default, cp, reset_anchor=at)


def schedule_default(
    unit: Unit, state: CustomerState, current: ProductState, at: datetime
) -> CustomerState:
    """X2: canceling a main product schedules its group's free default for ``ends_at``."""
    if not current.is_main or current.entity_id is not None:
        return state
    default = free_default(unit, current.group)
    if default is None or default.id == current.product_id:
        return state
    version = unit.ctx.registry.latest[default.id]
    cp = new_product_state(
        unit, default, version, entity_id=None, status="scheduled", started_at=at
    )
    return attrs.evolve(state, products=(*state.products, cp))


def carry_into(
    unit: Unit,
    old_rows: Sequence[RowState],
    new_rows: Sequence[RowState],
    product: Product,
) -> tuple[list[RowState], list[RowState]]:
    """A5/RO6 for an immediate switch: what the new rows inherit from the replaced product.

    - usage of allocated features always carries; metered usage only when the new item has
      ``reset_usage_on_enable=False``.
    - rollovers move to the new row of the same feature, re-capped by its config (or dropped).
    - rows of the old product's one-off prepaid items stay, as granted rows with no reset.

    Returns (new rows, kept old rows).
    """
    kept: list[RowState] = []
    usage: dict[tuple[str, str | None], Decimal] = {}
    rollovers: dict[tuple[str, str | None], list[object]] = {}
    for r in old_rows:
        if (
            r.billing == "prepaid"
            and not r.renews_with_product
            and r.reset is None
            and not r.allocated
        ):
            kept.append(
                attrs.evolve(
                    r,
                    cp_id=None,
                    product_id=None,
                    item_index=None,
                    billing=None,
                    add_on=True,
                    reset=None,
                    next_reset_at=None,
                    renews_with_product=False,
                )
            )
            continue
        key = (r.feature_id, r.entity_id)
        usage[key] = usage.get(key, ZERO) + (r.unlimited_usage if r.unlimited else r.usage)
        rollovers.setdefault(key, []).extend(r.rollovers)
    out: list[RowState] = []
    taken: set[tuple[str, str | None]] = set()
    for r in new_rows:
        key = (r.feature_id, r.entity_id)
        if key in taken:
            out.append(r)
            continue
        taken.add(key)
        item = product.items[r.item_index] if r.item_index is not None else None
        carry = r.allocated or (item is not None and item.reset_usage_on_enable is False)
        if carry and key in usage and not r.unlimited:
            r = attrs.evolve(r, balance=r.balance - usage[key])
            if r.allocated and r.billing == "usage":
                r = attrs.evolve(r, paid_seats=max(ZERO, r.usage - r.included))
        moved = rollovers.get(key)
        if moved and r.rollover is not None:
            r = attrs.evolve(
                r,
                rollovers=cap_rollovers(moved, rollover_cap(r, r.granted)),  # type: ignore[arg-type]
            )
        out.append(r)
    return out, kept


def attach_defaults(unit: Unit, state: CustomerState) -> CustomerState:
    """DF1: one default product per group, at customer scope, in the creating transaction."""
    registry = unit.ctx.registry
    now = unit.now
    for product in unit.ctx.catalog.products:
        if not product.default:
            continue
        version = registry.latest[product.id]
        cp = new_product_state(unit, product, version, entity_id=None)
        trial = product.free_trial
        if trial is not None:
            # DF2/T5: the trial claim is the store's constraint; a used trial means no default
            # trial, and a paid default without its trial is not attached for free.
            if claim_trial(unit, state.pk, own_trial_claim(product, None, state.fingerprint)):
                cp = with_trial(cp, product, trial_end(now, trial.length, trial.duration), now)
            elif not product.is_free:
                continue
        elif product.is_recurring_paid:
            cp = with_period(cp, product, anchor=now, start=now)
        state = activate(unit, state, product, cp)
    return state
