"""Public views derived from the stored aggregate: Customer, CustomerProduct, Entity, Balance."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar, cast

from autumn_core.app.context import Context
from autumn_core.control_state import FEW_LOCKS
from autumn_core.controls import BillingControls
from autumn_core.model import ZERO, CustomerState, ProductState, RowState
from autumn_core.results import Balance, Customer, CustomerProduct, Entity
from autumn_core.rules.balance_view import balance_view, detached
from autumn_core.rules.order import sees
from autumn_core.values import json_copy

T = TypeVar("T")


_BEGINNING = datetime.min.replace(tzinfo=UTC)
_END = datetime.max.replace(tzinfo=UTC)
#: Past this many views, a customer's memo starts over (one view per feature and entity).
MEMO_SIZE = 256


def memoized(state: CustomerState, now: datetime, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, reused while ``now`` stays between the same two expiries of ``state``.

    A state is immutable and its live rows change only when a row or rollover expires, so a
    view computed from it holds for every ``now`` in that window. Read paths (check) call this
    on the stored state, which a store hands out again until the customer is next saved.
    The key names the view and everything else it depends on (the context, feature, entity).
    """
    memo = state.read_memo
    hit = memo.get(key)
    if hit is not None and hit[0] <= now < hit[1]:
        return cast(T, hit[2])
    value = compute()
    points = state.expiry_points
    i = bisect_right(points, now)
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    memo[key] = (
        points[i - 1] if i else _BEGINNING,
        points[i] if i < len(points) else _END,
        value,
    )
    return value


def live_product_ids(ctx: Context, state: CustomerState) -> set[str]:
    """Instances that grant access and own deductible rows (2.4, K8)."""
    ok = ("active", "past_due") if ctx.options.include_past_due else ("active",)
    return {p.instance_id for p in state.products if p.status in ok}


def live_rows(ctx: Context, state: CustomerState, now: datetime) -> list[RowState]:
    live = live_product_ids(ctx, state)
    return [
        r
        for r in state.rows
        if (r.cp_id is None or r.cp_id in live) and (r.expires_at is None or r.expires_at > now)
    ]


def boolean_granted(
    ctx: Context, state: CustomerState, feature_id: str, entity_id: str | None
) -> bool:
    live = live_product_ids(ctx, state)
    for p in state.products:
        if p.instance_id not in live:
            continue
        if entity_id is not None and p.entity_id not in (None, entity_id):
            continue
        product = ctx.registry.product(p.product_id, p.version)
        if product and any(i.feature_id == feature_id for i in product.items):
            return True
    return False


def product_view(ctx: Context, p: ProductState, now: datetime) -> CustomerProduct:
    product = ctx.registry.product(p.product_id, p.version)
    return CustomerProduct(
        id=p.product_id,
        name=product.name if product else None,
        version=p.version,
        status=p.public_status(now),
        add_on=p.add_on,
        default=p.default,
        group=p.group,
        entity_id=p.entity_id,
        quantities=dict(p.quantities),
        started_at=p.started_at,
        current_period_start=p.current_period_start,
        current_period_end=p.current_period_end,
        trial_ends_at=p.trial_ends_at,
        canceled_at=p.canceled_at,
        ends_at=p.ends_at,
    )


def feature_balances(
    ctx: Context,
    state: CustomerState,
    rows: Iterable[RowState],
    entity_id: str | None,
    now: datetime,
) -> dict[str, Balance]:
    by_feature: dict[str, list[RowState]] = {}
    for r in rows:
        if sees(r, entity_id):
            by_feature.setdefault(r.feature_id, []).append(r)
    out: dict[str, Balance] = {}
    types = ctx.registry.feature_types
    for f in ctx.catalog.features:
        if f.id in by_feature:
            out[f.id] = balance_view(f.id, f.type, by_feature[f.id], now)
        elif f.type == "boolean" and boolean_granted(ctx, state, f.id, entity_id):
            out[f.id] = balance_view(f.id, "boolean", (), now)
    for fid, frows in by_feature.items():
        if fid not in out:  # a feature dropped from the catalog, still held
            out[fid] = balance_view(fid, types.get(fid, "metered"), frows, now)
    return with_held(state, out, entity_id)


def with_held(
    state: CustomerState, balances: dict[str, Balance], entity_id: str | None
) -> dict[str, Balance]:
    """The balances with what open locks hold of the rows the subject sees (BC5)."""
    cs = state.control_state
    if not cs.locks:
        return balances
    locks = cs.locks
    if len(locks) > FEW_LOCKS:
        fids = {fid for _, fid, _ in cs.held()}
    else:
        fids = {t.feature_id for lk in locks for t in lk.takes}
    held = {fid: held_of(state, fid, entity_id) for fid in fids if fid in balances}
    for fid, amount in held.items():
        if amount:
            # ``replace`` of a copy (its lists the caller's own): a dict copy, not an __init__.
            balance = detached(balances[fid])
            balance.__dict__["held"] = amount
            balances[fid] = balance
    return balances


def held_balance(
    ctx: Context,
    state: CustomerState,
    feature_id: str,
    feature_type: str,
    entity_id: str | None,
    now: datetime,
    rows: Sequence[RowState] | None = None,
) -> Balance | None:
    """The subject's Balance of a metered feature with what open locks hold of it (BC5),
    computed afresh (never memoized, so held is set on it in place); None when it holds no
    row of it. ``usage.subject_balance`` with ``with_held``, written out for reserving.
    ``rows``: the subject's live rows of the feature, when known."""
    if rows is None:
        rows = [
            r
            for r in live_rows(ctx, state, now)
            if r.feature_id == feature_id and sees(r, entity_id)
        ]
    if not rows:
        return None
    balance = balance_view(feature_id, feature_type, rows, now)
    held = held_of(state, feature_id, entity_id)
    if held:
        balance.__dict__["held"] = held  # a fresh Balance, shared with nobody
    return balance


def held_of(state: CustomerState, feature_id: str, entity_id: str | None) -> Decimal:
    """What open locks hold of ``feature_id`` in the rows the subject sees (``with_held`` of
    one feature). A take from a row since reset is not held: the reset refilled the row, and
    the take counts as spent in the period it was taken in."""
    cs = state.control_state
    rows = state.rows
    if len(cs.locks) > FEW_LOCKS:
        # Many locks open: their totals by row and period, kept on the control state.
        parts: Iterable[tuple[str, datetime | None, Decimal]] = [
            (rid, period, amount)
            for (rid, fid, period), amount in cs.held().items()
            if fid == feature_id
        ]
    else:
        parts = [
            (t.row_id, t.period, t.total)
            for lk in cs.locks
            for t in lk.takes
            if t.feature_id == feature_id
        ]
    held = ZERO
    by_id = {r.id: r for r in rows} if len(rows) > _FEW_ROWS else None
    for rid, period, amount in parts:
        if by_id is not None:
            row = by_id.get(rid)
        else:
            row = None
            for r in rows:
                if r.id == rid:
                    row = r
                    break
        if row is not None and row.next_reset_at == period and sees(row, entity_id):
            held = held + amount
    return held


#: Up to this many rows, a row is found by its id by a scan rather than through a dict.
_FEW_ROWS = 8


def customer_view(ctx: Context, state: CustomerState, now: datetime) -> Customer:
    rows = live_rows(ctx, state, now)
    visible = [p for p in state.products if p.status != "expired"]
    entities = [
        Entity(
            id=e.id,
            customer_id=state.id,
            feature_id=e.feature_id,
            name=e.name,
            created_at=e.created_at,
            products=[product_view(ctx, p, now) for p in visible if p.entity_id == e.id],
            features=feature_balances(ctx, state, rows, e.id, now),
            billing_controls=e.billing_controls,
            limit_usage=limit_usage(state, e.billing_controls, rows, e.id, now),
        )
        for e in state.entities
    ]
    return Customer(
        id=state.id,
        name=state.name,
        email=state.email,
        fingerprint=state.fingerprint,
        metadata=json_copy(state.metadata),  # the caller's own copy
        created_at=state.created_at,
        gateway_customer_id=state.gateway_customer_id,
        products=[product_view(ctx, p, now) for p in visible if p.entity_id is None],
        features=feature_balances(ctx, state, rows, None, now),
        entities=entities,
        billing_controls=state.billing_controls,
        limit_usage=limit_usage(state, state.billing_controls, rows, None, now),
    )


def limit_usage(
    state: CustomerState,
    controls: BillingControls,
    rows: list[RowState],
    entity_id: str | None,
    now: datetime,
) -> dict[str, Decimal]:
    """What each usage limit of ``controls`` (the customer's, or an entity's own) has counted
    in its current window (BC3): zero once the window it counted in is over."""
    if not controls.usage_limits:
        return {}
    from autumn_core.app.limits import Limit, window_used

    return {
        u.feature_id: window_used(state, Limit(u, entity_id), rows, now)[2]
        for u in controls.usage_limits
    }


def entity_view(ctx: Context, state: CustomerState, entity_id: str, now: datetime) -> Entity:
    return next(e for e in customer_view(ctx, state, now).entities if e.id == entity_id)
