"""Check and track (docs/rules.md §9, §10, §12); balance edits are in `balances`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from autumn_core.app import signals
from autumn_core.app.context import Context
from autumn_core.app.limits import Controlled, scope_for
from autumn_core.app.unit import Unit, args_fingerprint, require_entity
from autumn_core.app.views import boolean_granted, live_rows, memoized, with_held
from autumn_core.catalog import Feature
from autumn_core.errors import (
    FeatureNotFound,
    InsufficientBalance,
    InvalidRequest,
)
from autumn_core.model import ZERO, CustomerState, EventRecord, RowState, with_rows
from autumn_core.ports import StoreTransaction
from autumn_core.results import (
    Balance,
    ByEmail,
    CheckResult,
    CustomerData,
    TrackResult,
)
from autumn_core.rules.balance_view import balance_view, detached
from autumn_core.rules.deduction import (
    Candidate,
    Deduction,
    capacity,
    deduct,
    fits_within,
)
from autumn_core.rules.order import order_key, sees
from autumn_core.serialization import converter
from autumn_core.values import check_aware, check_id, to_decimal

OVERAGE_MODES = ("cap", "reject", "overflow")
ONE = Decimal(1)


# -- shared helpers ---------------------------------------------------------------------------
def known_feature(ctx: Context, feature_id: Any) -> Feature:
    feature = ctx.catalog.feature(feature_id) if isinstance(feature_id, str) else None
    if feature is None:
        raise FeatureNotFound(f"feature {feature_id!r} does not exist")
    return feature


def check_customer_ref(ref: Any) -> None:
    if isinstance(ref, ByEmail):
        return
    check_id(ref)


def check_entity_ref(entity_id: Any) -> None:
    if entity_id is not None:
        check_id(entity_id, "entity id")


def pool_costs(ctx: Context, feature_id: str) -> dict[str, Decimal]:
    """Credit systems listing ``feature_id``, with its cost in each (CS1, CS3)."""
    out: dict[str, Decimal] = {}
    for pool in ctx.catalog.pools_of(feature_id):
        system = ctx.catalog.feature(pool)
        if system is not None:
            out[pool] = system.costs[feature_id]
    return out


def costs_of(ctx: Context, feature_id: str) -> dict[str, Decimal]:
    """``pool_costs`` of a feature, computed once per context."""
    pools = ctx.pool_costs.get(feature_id)
    if pools is None:
        pools = ctx.pool_costs[feature_id] = pool_costs(ctx, feature_id)
    return pools


def candidates(
    ctx: Context,
    rows: Sequence[RowState],
    feature_id: str,
    entity_id: str | None,
    *,
    customer_level_only: bool = False,
) -> list[Candidate]:
    """The rows a deduction of ``feature_id`` considers, in deduction order (K2, R4, O1-O10)."""
    pools = costs_of(ctx, feature_id)
    found: list[Candidate] = []
    for r in rows:
        if customer_level_only and r.entity_id is not None:
            continue
        if entity_id is not None and not sees(r, entity_id):
            continue  # (the customer sees every row)
        if r.feature_id == feature_id:
            found.append(Candidate(r, ONE))
        elif r.feature_id in pools:
            found.append(Candidate(r, pools[r.feature_id]))
    if len(found) > 1:
        reverse = ctx.options.reverse_deduction_order
        found.sort(
            key=lambda c: order_key(
                c.row, own=c.row.feature_id == feature_id, entity_id=entity_id, reverse=reverse
            )
        )
    return found


def replace_rows(state: CustomerState, changed: Mapping[str, RowState]) -> CustomerState:
    """The customer with some rows replaced (by id)."""
    return with_rows(state, changed)


def subject_balance(
    ctx: Context,
    state: CustomerState,
    feature_id: str,
    entity_id: str | None,
    now: datetime,
    live: Sequence[RowState] | None = None,
) -> Balance | None:
    """The subject's Balance of one feature (EN6); ``live`` = ``live_rows`` when already known."""
    if live is None:
        live = live_rows(ctx, state, now)
    rows = [r for r in live if r.feature_id == feature_id and sees(r, entity_id)]
    ftype = ctx.registry.feature_types[feature_id]
    if not rows:
        if ftype == "boolean" and boolean_granted(ctx, state, feature_id, entity_id):
            return balance_view(feature_id, "boolean", (), now)
        return None
    balance = balance_view(feature_id, ftype, rows, now)
    if state.control_state.locks:
        return with_held(state, {feature_id: balance}, entity_id)[feature_id]
    return balance


# -- check ------------------------------------------------------------------------------------
@attrs.define  # built on every call and never shared: a mutable slotted init is cheapest
class CheckArgs:
    customer: Any
    feature: Feature
    required: Decimal
    entity_id: str | None
    send_event: bool
    customer_data: CustomerData | None


def validate_check(
    ctx: Context,
    customer_id: Any,
    feature_id: Any,
    required_balance: Any,
    entity_id: Any,
    send_event: Any,
    customer_data: Any,
) -> CheckArgs:
    check_customer_ref(customer_id)
    feature = known_feature(ctx, feature_id)
    required = to_decimal(required_balance, "required_balance")
    check_entity_ref(entity_id)
    if not isinstance(send_event, bool):
        raise InvalidRequest(f"send_event must be a bool, got {send_event!r}")
    if send_event and feature.type == "boolean":
        raise InvalidRequest(f"send_event is not allowed on boolean feature {feature.id!r}")
    if customer_data is not None and not isinstance(customer_data, CustomerData):
        raise InvalidRequest(f"customer_data must be a CustomerData, got {customer_data!r}")
    return CheckArgs(customer_id, feature, required, entity_id, send_event, customer_data)


def check(unit: Unit, a: CheckArgs) -> CheckResult:
    state = unit.get_or_create(a.customer, a.customer_data)
    if a.entity_id is not None:
        require_entity(state, a.entity_id)
    return _decide(unit.ctx, state, a, unit.now, unit)


def check_stored(ctx: Context, tx: StoreTransaction, a: CheckArgs) -> CheckResult:
    """A read check (``send_event=False``). A stored customer with no lazy work due is decided
    on its stored state as it is, without a unit of work (the work a unit would do for it is
    nothing); any other (missing, addressed by email, due) goes through ``check``."""
    if type(a.customer) is str:
        pk = tx.customer_pk(a.customer)
        state = None if pk is None else tx.load_customer(pk, for_update=False)
        if state is not None:
            now = ctx.clock.now()
            due = state.due_at
            if due is None or due > now:
                if a.entity_id is not None:
                    require_entity(state, a.entity_id)
                return _decide(ctx, state, a, now, None)
    return check(Unit(ctx, tx, write=False), a)


def _decide(
    ctx: Context, state: CustomerState, a: CheckArgs, now: datetime, unit: Unit | None
) -> CheckResult:
    """The check's decision on the subject's state; ``unit`` records it when ``send_event``."""
    f = a.feature
    if f.type == "boolean":
        granted = boolean_granted(ctx, state, f.id, a.entity_id)
        return CheckResult(
            allowed=granted,
            customer_id=state.id,
            feature_id=f.id,
            required_balance=a.required,
            entity_id=a.entity_id,
            balance=balance_view(f.id, "boolean", (), now) if granted else None,
        )
    # The loaded state is immutable: what a check derives from it (the candidates, their
    # capacity, the balance) is memoized on it, so a customer checked again before its next
    # save costs only the decision itself.
    loaded = state
    plan: CheckPlan = memoized(
        loaded,
        now,
        (ctx, "check", f.id, a.entity_id),
        lambda: _check_plan(ctx, loaded, f.id, a.entity_id, now),
    )
    cands = plan.cands
    if not cands:
        return CheckResult(False, state.id, f.id, a.required, a.entity_id, None)
    used: Deduction | None = None
    ctl = Controlled.start(ctx, state, a.entity_id, now) if plan.controlled else None
    if ctl is not None:
        # Billing controls (BC2, BC3): the decision under the subject's floors and windows.
        allowed = a.required <= 0 or ctl.fits(f.id, cands, a.required, live_rows(ctx, state, now))
        if not plan.own:
            used = deduct(ctl.govern(cands), a.required, "reject", now, dry_run=True)
    elif plan.own:
        # The subject holds the feature itself: the decision is a sum over the rows.
        room = plan.room  # (a capacity is never negative: a required amount <= 0 fits)
        allowed = (
            a.required <= room if room is not None else fits_within(room, cands, a.required, now)
        )
    elif any(c.row.unlimited for c in cands) or a.required <= 0:
        allowed = True
    else:
        used = deduct(cands, a.required, "reject", now, dry_run=True)
        allowed = used.remainder == 0
    balance = plan.balance
    if a.send_event and allowed:
        assert unit is not None  # a check that records runs in a write unit
        _track_on_state(
            unit, state, [f], a.required, a.entity_id, "reject", {}, now, event_name=None
        )
        state = unit.current(state.pk)
        balance = None
    if plan.own:
        decided, cost = f.id, ONE
    else:
        decided, cost = _deciding_pool(cands, used)
        balance = None
    if balance is None:
        after = state
        balance = memoized(
            after,
            now,
            (ctx, "balance", decided, a.entity_id),
            lambda: subject_balance(ctx, after, decided, a.entity_id, now),
        )
    return CheckResult(  # positional: built on every check, and keywords cost a third more
        allowed,
        state.id,
        decided,
        a.required if cost is ONE else a.required * cost,
        a.entity_id,
        None if balance is None else detached(balance),
    )


@attrs.frozen
class CheckPlan:
    """What a check derives from one customer state, whatever the required amount."""

    cands: tuple[Candidate, ...]
    #: Whether the subject holds the feature itself (else only credit pools list it).
    own: bool
    #: ``rules.deduction.capacity`` of the candidates, when ``own``.
    room: Decimal | None
    #: The subject's balance of the feature, when ``own`` (else it depends on the decision).
    balance: Balance | None
    #: Whether the subject has billing controls (BC2, BC3): without, a check skips them.
    controlled: bool


def _check_plan(
    ctx: Context, state: CustomerState, feature_id: str, entity_id: str | None, now: datetime
) -> CheckPlan:
    live = live_rows(ctx, state, now)
    cands = tuple(candidates(ctx, live, feature_id, entity_id))
    own = any(c.row.feature_id == feature_id for c in cands)
    controlled = scope_for(state, entity_id) is not None
    if not own:
        return CheckPlan(cands, False, None, None, controlled)
    balance = subject_balance(ctx, state, feature_id, entity_id, now, live)
    return CheckPlan(cands, True, capacity(cands, now), balance, controlled)


def _deciding_pool(cands: Sequence[Candidate], dry: Deduction | None) -> tuple[str, Decimal]:
    if dry is not None:
        for c in cands:
            if dry.applied.get(c.row.feature_id, ZERO) > 0:
                return c.row.feature_id, c.cost
    return cands[0].row.feature_id, cands[0].cost


# -- track ------------------------------------------------------------------------------------
@attrs.define  # built on every call and never shared: a mutable slotted init is cheapest
class TrackArgs:
    customer: Any
    features: tuple[Feature, ...]
    feature_id: str | None
    event_name: str | None
    value: Decimal
    entity_id: str | None
    idempotency_key: str | None
    properties: Mapping[str, Any]
    timestamp: datetime | None
    overage: str
    customer_data: CustomerData | None

    def fingerprint(self) -> str:
        return args_fingerprint(
            {
                "feature_id": self.feature_id,
                "event_name": self.event_name,
                "value": self.value,
                "entity_id": self.entity_id,
                "properties": dict(self.properties),
                "timestamp": self.timestamp,
                "overage": self.overage,
                "customer_data": self.customer_data,
            }
        )


def validate_track(
    ctx: Context,
    customer_id: Any,
    feature_id: Any = None,
    *,
    event_name: Any = None,
    value: Any = 1,
    entity_id: Any = None,
    idempotency_key: Any = None,
    properties: Any = None,
    timestamp: Any = None,
    overage: Any = "cap",
    customer_data: Any = None,
) -> TrackArgs:
    check_customer_ref(customer_id)
    if (feature_id is None) == (event_name is None):
        raise InvalidRequest("give exactly one of feature_id / event_name")
    amount = to_decimal(value, "value")
    if overage not in OVERAGE_MODES:
        raise InvalidRequest(f"overage must be one of {OVERAGE_MODES}, got {overage!r}")
    if event_name is not None:
        if not isinstance(event_name, str):
            raise InvalidRequest(f"event_name must be a string, got {event_name!r}")
        if overage == "reject":
            raise InvalidRequest(
                f"event_name {event_name!r} cannot be tracked with overage='reject'"
            )
        names = ctx.catalog.listeners(event_name)
        if not names:
            raise FeatureNotFound(f"no feature listens to event {event_name!r}")
        features = tuple(known_feature(ctx, n) for n in names)
    else:
        features = (known_feature(ctx, feature_id),)
    if features[0].type == "boolean":
        raise InvalidRequest(f"feature {features[0].id!r} is boolean and cannot be tracked")
    check_entity_ref(entity_id)
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not idempotency_key
    ):
        raise InvalidRequest(f"idempotency_key must be a non-empty string, got {idempotency_key!r}")
    if properties is not None and not isinstance(properties, Mapping):
        raise InvalidRequest(f"properties must be a dict, got {properties!r}")
    ts = None if timestamp is None else check_aware(timestamp, "timestamp")
    if customer_data is not None and not isinstance(customer_data, CustomerData):
        raise InvalidRequest(f"customer_data must be a CustomerData, got {customer_data!r}")
    return TrackArgs(
        customer_id,
        features,
        feature_id,
        event_name,
        amount,
        entity_id,
        idempotency_key,
        dict(properties or {}),
        ts,
        overage,
        customer_data,
    )


def track(unit: Unit, a: TrackArgs) -> TrackResult:
    fingerprint = a.fingerprint() if a.idempotency_key is not None else ""
    if a.idempotency_key is not None:
        pk = unit.pk_of(a.customer)
        if pk is not None:
            stored = unit.replay("track", pk, a.idempotency_key, fingerprint)
            if stored is not None:
                return attrs.evolve(converter.structure(stored, TrackResult), replayed=True)
    state = unit.get_or_create(a.customer, a.customer_data)
    unit.entity_check(state, a.entity_id)
    result = _track_on_state(
        unit,
        state,
        list(a.features),
        a.value,
        a.entity_id,
        a.overage,
        a.properties,
        a.timestamp or unit.now,
        event_name=a.event_name,
    )
    if a.idempotency_key is not None:
        unit.remember(
            "track", state.pk, a.idempotency_key, fingerprint, converter.unstructure(result)
        )
    return result


def _track_on_state(
    unit: Unit,
    state: CustomerState,
    features: list[Feature],
    value: Decimal,
    entity_id: str | None,
    mode: str,
    properties: Mapping[str, Any],
    timestamp: datetime,
    *,
    event_name: str | None,
    signal_from: CustomerState | None = None,
    recorded: Decimal | None = None,
) -> TrackResult:
    """``signal_from``: the state signals compare with (BC6), when not ``state`` itself;
    ``recorded``: the value the event records, when not ``value`` (a confirm above its hold
    deducts only the part beyond it)."""
    ctx = unit.ctx
    now = unit.now
    applied: dict[str, Decimal] = {}
    touched: list[str] = []
    seat_rows: list[str] = []
    rows = live_rows(ctx, state, now)
    before = state if signal_from is None else signal_from
    ctl = Controlled.start(ctx, state, entity_id, now)
    low = False
    for f in features:
        cands = candidates(ctx, rows, f.id, entity_id)
        if ctl is None:
            result = deduct(cands, value, mode, now)
        else:
            result = ctl.deduct(f.id, cands, value, mode, rows)
        # R9 applies to deductions; a refund's excess is always dropped (D5).
        short = value > 0 and result.remainder > 0
        if short and (mode == "reject" or (f.type == "allocated" and cands)):
            raise InsufficientBalance(
                f"customer {state.id!r} lacks {result.remainder} of {f.id!r} for a track of {value}"
            )
        if result.changed:
            state = with_rows(state, result.changed)
            # A deduction changes balances only, never which rows are live.
            rows = [result.changed.get(r.id, r) for r in rows]
        for fid, amount in result.applied.items():
            applied[fid] = applied.get(fid, ZERO) + amount
        applied.setdefault(f.id, ZERO)
        if f.id not in touched:
            touched.append(f.id)
        for c in cands:
            if c.row.feature_id not in touched:
                touched.append(c.row.feature_id)
        for rid, r in result.changed.items():
            if r.balance <= 0:
                low = True
            if r.allocated and r.billing == "usage":
                seat_rows.append(rid)
    live: list[RowState] | None = rows
    if seat_rows:
        from autumn_core.app.seats import settle_seats

        state = settle_seats(unit, state, seat_rows)
        live = None
    if ctl is not None:
        state = ctl.finish(state)
    unit.put(state)
    # A feature can only become blocked when a row reached zero, or under controls (BC6).
    if low or ctl is not None:
        signals.after_change(unit, before, state, entity_id, touched, candidates)
    # Positional: these two are built on every track, and keywords cost a third more.
    event_id = unit.event_id()
    unit.events.append(
        EventRecord(
            event_id,
            state.pk,
            entity_id,
            None if event_name is not None else features[0].id,
            event_name,
            value if recorded is None else recorded,
            dict(properties),
            timestamp,
            now,
        )
    )
    return TrackResult(
        event_id,
        state.id,
        entity_id,
        value,
        applied,
        subject_balances(ctx, state, touched, entity_id, now, live),
    )


def subject_balances(
    ctx: Context,
    state: CustomerState,
    feature_ids: Sequence[str],
    entity_id: str | None,
    now: datetime,
    live: Sequence[RowState] | None = None,
) -> dict[str, Balance]:
    """The subject's Balance of each feature that has rows in its view (R13), in the given order.

    ``live`` = ``live_rows(ctx, state, now)`` when the caller already has it.
    """
    if live is None:
        live = live_rows(ctx, state, now)
    types = ctx.registry.feature_types
    if len(feature_ids) == 1 and entity_id is None:
        # A track of one feature by the customer: every row of it is in the view.
        fid = feature_ids[0]
        mine = [r for r in live if r.feature_id == fid]
        out = {fid: balance_view(fid, types[fid], mine, now)} if mine else {}
        return with_held(state, out, entity_id) if state.control_state.locks else out
    wanted = set(feature_ids)
    by_feature: dict[str, list[RowState]] = {}
    for r in live:
        if r.feature_id in wanted and sees(r, entity_id):
            by_feature.setdefault(r.feature_id, []).append(r)
    out = {
        fid: balance_view(fid, types[fid], by_feature[fid], now)
        for fid in feature_ids
        if fid in by_feature
    }
    return with_held(state, out, entity_id) if state.control_state.locks else out
