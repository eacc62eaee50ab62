"""Cancel and uncancel (docs/rules.md X1-X6, DF3-DF5, A3 for trials, P9 credits)."""

from __future__ import annotations

from typing import Any

import attrs

from autumn_core.app import billing
from autumn_core.app.provisioning import (
    activate_successor,
    drop_products,
    expire,
    replace_product,
    schedule_default,
    scheduled_in,
)
from autumn_core.app.renewals import _sync_cancel
from autumn_core.app.unit import Unit
from autumn_core.app.usage import check_customer_ref, check_entity_ref
from autumn_core.app.views import product_view
from autumn_core.errors import InvalidRequest, PaymentFailed, ProductNotFound
from autumn_core.model import ZERO, CustomerState, InvoiceLineRecord, ProductState
from autumn_core.results import AttachPreview, CustomerProduct, InvoiceLine


def validate(customer_id: Any, product_id: Any, entity_id: Any, immediately: Any = False) -> None:
    check_customer_ref(customer_id)
    if not isinstance(product_id, str) or not product_id:
        raise InvalidRequest(f"product_id must be a non-empty string, got {product_id!r}")
    check_entity_ref(entity_id)
    if not isinstance(immediately, bool):
        raise InvalidRequest(f"immediately must be a bool, got {immediately!r}")


def _live(state: CustomerState, product_id: str, entity_id: str | None) -> list[ProductState]:
    return [
        p
        for p in state.products
        if p.is_live and p.product_id == product_id and p.entity_id == entity_id
    ]


def cancel(
    unit: Unit, customer_id: Any, product_id: str, entity_id: str | None, immediately: bool
) -> CustomerProduct:
    """X1: every live instance of the product in the scope; returns the last one."""
    state = unit.get(customer_id)  # C8: cancel never creates
    unit.entity_check(state, entity_id)
    targets = _live(state, product_id, entity_id)
    if not targets:
        raise ProductNotFound(
            f"customer {state.id!r} holds no live product {product_id!r}"
            + (f" on entity {entity_id!r}" if entity_id else "")
        )
    last: ProductState | None = None
    for cp in targets:
        state, last = cancel_instance(unit, state, cp, immediately=immediately)
    unit.put(state)
    assert last is not None
    return product_view(unit.ctx, last, unit.now)


def cancel_instance(
    unit: Unit, state: CustomerState, cp: ProductState, *, immediately: bool
) -> tuple[CustomerState, ProductState]:
    now = unit.now
    trialing = cp.is_trialing(now)
    period_end = cp.trial_ends_at if trialing else cp.current_period_end
    if not immediately and cp.free and cp.trial_ends_at is not None and trialing:
        period_end = cp.trial_ends_at  # X2: a free product on a trial ends at its trial end
    if immediately or period_end is None:
        return _cancel_now(unit, state, cp)
    # X2: at the end of the cycle.
    canceling = attrs.evolve(cp, canceled_at=now, ends_at=period_end)
    state = replace_product(state, canceling)
    if cp.is_main:
        state = drop_products(
            state, {p.instance_id for p in scheduled_in(state, cp.group, cp.entity_id)}
        )
        state = schedule_default(unit, state, canceling, period_end)
    return state, canceling


def _cancel_now(
    unit: Unit, state: CustomerState, cp: ProductState
) -> tuple[CustomerState, ProductState]:
    """X3: expires now; the unused fraction of fixed prices is credited; overage not billed."""
    now = unit.now
    lines: list[InvoiceLineRecord] = []
    if billing.is_recurring_live(cp) and not cp.is_trialing(now):
        product = billing.product_of(unit.ctx, cp)
        lines = billing.cycle_lines(
            unit.ctx,
            product,
            cp,
            [r for r in state.rows if r.cp_id == cp.instance_id],
            now=now,
            include_one_off=False,
            prorated=True,
            sign=-1,
        )
        lines = [ln for ln in lines if ln.amount != 0]
    if cp.is_main:
        state = drop_products(
            state, {p.instance_id for p in scheduled_in(state, cp.group, cp.entity_id)}
        )
    state = expire(state, cp, now)
    ended = state.product_instance(cp.instance_id)
    assert ended is not None
    state = activate_successor(unit, state, cp, now)
    if lines:
        gateway = unit.ctx.gateway
        recurring = billing.recurring_prices(unit.ctx, state) if gateway is not None else None
        sent = billing.charge(
            unit,
            state,
            lines,
            cp_id=cp.instance_id,
            key=f"cancel:{cp.instance_id}",
            recurring=recurring,
            description=f"cancel {cp.product_id}",
            reason="cancel",
        )
        if sent.outcome == "failed":  # pragma: no cover - a credit cannot be declined
            raise PaymentFailed(f"the provider refused the credit for {cp.product_id!r}")
        state = billing.adopt(state, sent)
        unit.invoices.append(sent.invoice)
    else:
        state = _sync_cancel(unit, state)
    return state, ended


def uncancel(
    unit: Unit, customer_id: Any, product_id: str, entity_id: str | None
) -> CustomerProduct:
    """X5: clears the cancel and deletes the scheduled default or downgrade of the group."""
    state = unit.get(customer_id)
    unit.entity_check(state, entity_id)
    targets = _live(state, product_id, entity_id)
    if not targets:
        raise ProductNotFound(
            f"customer {state.id!r} holds no live product {product_id!r}"
            + (f" on entity {entity_id!r}" if entity_id else "")
        )
    last = targets[-1]
    for cp in targets:
        if cp.canceled_at is None and cp.ends_at is None:
            last = cp
            continue
        restored = attrs.evolve(cp, canceled_at=None, ends_at=None)
        state = replace_product(state, restored)
        if cp.is_main:
            state = drop_products(
                state, {p.instance_id for p in scheduled_in(state, cp.group, cp.entity_id)}
            )
        last = restored
    unit.put(state)
    return product_view(unit.ctx, last, unit.now)


def preview_cancel(
    unit: Unit, customer_id: Any, product_id: str, entity_id: str | None, immediately: bool
) -> AttachPreview:
    """X1-X3 as a preview: the credit lines an immediate cancel would issue; nothing changes."""
    state = unit.get(customer_id)
    unit.entity_check(state, entity_id)
    targets = _live(state, product_id, entity_id)
    if not targets:
        raise ProductNotFound(
            f"customer {state.id!r} holds no live product {product_id!r}"
            + (f" on entity {entity_id!r}" if entity_id else "")
        )
    now = unit.now
    lines: list[InvoiceLineRecord] = []
    for cp in targets:
        trialing = cp.is_trialing(now)
        ends = cp.trial_ends_at if trialing else cp.current_period_end
        if (immediately or ends is None) and billing.is_recurring_live(cp) and not trialing:
            lines += billing.cycle_lines(
                unit.ctx,
                billing.product_of(unit.ctx, cp),
                cp,
                [r for r in state.rows if r.cp_id == cp.instance_id],
                now=now,
                include_one_off=False,
                prorated=True,
                sign=-1,
            )
    lines = [ln for ln in lines if ln.amount != 0]
    return AttachPreview(
        scenario="cancel",
        due_now=billing.total(lines),
        lines=[
            InvoiceLine(
                ln.description,
                ln.product_id,
                ln.feature_id,
                ln.quantity,
                ln.amount,
                ln.period_start,
                ln.period_end,
            )
            for ln in lines
        ],
        next_cycle_at=None,
        next_cycle_total=ZERO,
    )
