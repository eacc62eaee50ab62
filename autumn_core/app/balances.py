"""Balance edits: set, grant and delete (docs/rules.md §13, B1-B6)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from autumn_core.app import signals
from autumn_core.app.context import new_id
from autumn_core.app.seats import count_entities
from autumn_core.app.unit import Unit
from autumn_core.app.usage import (
    candidates,
    check_customer_ref,
    check_entity_ref,
    known_feature,
    replace_rows,
    subject_balance,
)
from autumn_core.app.views import live_rows
from autumn_core.catalog import RESET_INTERVALS
from autumn_core.errors import Conflict, InvalidRequest, NotFound
from autumn_core.model import ZERO, RowState
from autumn_core.results import UNSET, Balance
from autumn_core.rules.deduction import shift_total
from autumn_core.rules.order import sees
from autumn_core.rules.periods import next_boundary
from autumn_core.values import check_aware, check_id, to_decimal


def set_balance(
    unit: Unit,
    customer_id: Any,
    feature_id: Any,
    remaining: Any,
    usage: Any,
    entity_id: Any,
) -> Balance:
    ctx = unit.ctx
    check_customer_ref(customer_id)
    feature = known_feature(ctx, feature_id)
    if (remaining is None) == (usage is None):
        raise InvalidRequest("give exactly one of remaining / usage")
    target = to_decimal(
        remaining if remaining is not None else usage,
        "remaining" if remaining is not None else "usage",
    )
    check_entity_ref(entity_id)
    if feature.type == "boolean":
        raise InvalidRequest(f"feature {feature.id!r} is boolean and has no balance to set")
    state = unit.get_or_create(customer_id, None)
    unit.entity_check(state, entity_id)
    now = unit.now
    rows = [
        r for r in live_rows(ctx, state, now) if r.feature_id == feature.id and sees(r, entity_id)
    ]
    if not rows:
        raise InvalidRequest(f"customer {state.id!r} has no balance of {feature.id!r} to set")
    if any(r.unlimited for r in rows):
        raise InvalidRequest(f"feature {feature.id!r} is unlimited for customer {state.id!r}")
    cands = candidates(ctx, rows, feature.id, entity_id)
    cands = [c for c in cands if c.row.feature_id == feature.id]
    total = sum(
        (c.row.balance + sum((r.balance for r in c.row.rollovers), ZERO) for c in cands), ZERO
    )
    granted = sum(
        (c.row.granted + sum((r.amount for r in c.row.rollovers), ZERO) for c in cands), ZERO
    )
    wanted = target if remaining is not None else granted - target
    before = state
    state = replace_rows(state, shift_total(cands, total - wanted, now))
    unit.put(state)
    # A balance edit is a write like a track: the alerts and limits it crosses fire (BC4, BC6).
    signals.after_change(unit, before, state, entity_id, [feature.id], candidates)
    balance = subject_balance(ctx, state, feature.id, entity_id, now)
    assert balance is not None
    return balance


def grant_balance(
    unit: Unit,
    customer_id: Any,
    feature_id: Any,
    amount: Any,
    reset: Any,
    expires_at: Any,
    entity_id: Any,
) -> Balance:
    ctx = unit.ctx
    check_customer_ref(customer_id)
    feature = known_feature(ctx, feature_id)
    if feature.type == "boolean":
        raise InvalidRequest(f"feature {feature.id!r} is boolean; grant a product instead")
    value = to_decimal(amount, "amount")
    if value <= 0:
        raise InvalidRequest(f"a grant amount must be > 0, got {amount!r}")
    if reset is not None and reset not in RESET_INTERVALS:
        raise InvalidRequest(f"reset must be None or one of {RESET_INTERVALS}, got {reset!r}")
    if reset is not None and feature.type == "allocated":
        raise InvalidRequest(f"allocated feature {feature.id!r} cannot reset")
    expires = None if expires_at is None else check_aware(expires_at, "expires_at")
    check_entity_ref(entity_id)
    state = unit.get_or_create(customer_id, None)
    unit.entity_check(state, entity_id)
    now = unit.now
    if expires is not None and expires <= now:
        raise InvalidRequest(f"expires_at must be in the future, got {expires_at!r}")
    row = RowState(
        id=new_id("row"),
        feature_id=feature.id,
        created_at=now,
        granted=value,
        balance=value,
        entity_id=entity_id,
        allocated=feature.type == "allocated",
        add_on=True,
        reset=reset,
        anchor=now,
        next_reset_at=next_boundary(now, reset, 1, now) if reset else None,
        expires_at=expires,
        included=value,
    )
    before = state
    state = attrs.evolve(state, rows=(*state.rows, row))
    state = unit.put(count_entities(unit, state, into=[row], refuse=True))  # EN2
    signals.after_change(unit, before, state, entity_id, [feature.id], candidates)
    balance = subject_balance(ctx, state, feature.id, entity_id, now)
    assert balance is not None
    return balance


def delete_balance(
    unit: Unit,
    customer_id: Any,
    feature_id: Any,
    balance_id: Any,
    entity_id: Any,
    interval: Any,
    recalculate: Any,
) -> None:
    """B6: remove grant rows; product rows are the product's items and stay."""
    ctx = unit.ctx
    check_customer_ref(customer_id)
    feature = None if feature_id is None else known_feature(ctx, feature_id)
    if balance_id is not None:
        check_id(balance_id, "balance_id")
    if feature is None and balance_id is None:
        raise InvalidRequest("give feature_id or balance_id: which balance to delete")
    if interval is not UNSET and interval is not None and interval not in RESET_INTERVALS:
        raise InvalidRequest(f"interval must be None or one of {RESET_INTERVALS}, got {interval!r}")
    if not isinstance(recalculate, bool):
        raise InvalidRequest(f"recalculate must be a bool, got {recalculate!r}")
    check_entity_ref(entity_id)
    state = unit.get_or_create(customer_id, None)
    unit.entity_check(state, entity_id)
    now = unit.now
    doomed = [
        r
        for r in live_rows(ctx, state, now)
        if (feature is None or r.feature_id == feature.id)
        and (balance_id is None or r.id == balance_id)
        and (entity_id is None or r.entity_id == entity_id)
        and (interval is UNSET or r.reset == interval)
    ]
    what = f"{feature.id!r}" if feature is not None else f"id {balance_id!r}"
    if not doomed:
        raise NotFound(f"customer {state.id!r} has no balance of {what} to delete")
    held = [r for r in doomed if r.cp_id is not None]
    if held:
        raise Conflict(
            f"the balance of {held[0].feature_id!r} is granted by product {held[0].product_id!r}:"
            " cancel the product instead"
        )
    before = state
    gone = {r.id for r in doomed}
    usage: dict[str, Decimal] = {}
    for r in doomed:
        usage[r.feature_id] = usage.get(r.feature_id, ZERO) + r.granted - r.balance
    state = attrs.evolve(state, rows=tuple(r for r in state.rows if r.id not in gone))
    if recalculate:
        for fid, used in usage.items():
            rows = [
                r for r in live_rows(ctx, state, now) if r.feature_id == fid and sees(r, entity_id)
            ]
            cands = [c for c in candidates(ctx, rows, fid, entity_id) if c.row.feature_id == fid]
            if used > 0 and cands and not any(r.unlimited for r in rows):
                state = replace_rows(state, shift_total(cands, used, now))
    unit.put(state)
    signals.after_change(unit, before, state, entity_id, list(usage), candidates)
