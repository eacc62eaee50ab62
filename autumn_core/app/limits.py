"""Billing controls applied to check and track (docs/rules.md BC2, BC3).

``Controlled.start`` resolves the controls of one subject (an entity's entries win over the
customer's, per feature); ``deduct`` runs a deduction under them (overage switches and spend
limits as row floors, usage limits as a cap on what one call may take); ``finish`` writes the
usage-window counters into the customer. All of it happens on the customer aggregate inside
the call's store transaction, so concurrent calls are serialized by the store like any track.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import attrs

from autumn_core.app.context import Context
from autumn_core.control_state import UsageWindow
from autumn_core.controls import NO_CONTROLS, BillingControls, SpendLimit, UsageAlert, UsageLimit
from autumn_core.model import ZERO, CustomerState, RowState, replace
from autumn_core.rules.deduction import Candidate, Deduction, deduct, fits
from autumn_core.rules.limits import FeatureRule, governed, restore, window_bounds


@attrs.frozen
class Limit:
    """A usage limit and the window it counts in (None: the customer's shared window)."""

    limit: UsageLimit
    window_entity: str | None


@attrs.frozen
class Scope:
    """The controls that apply to one subject."""

    rules: dict[str, FeatureRule]
    limits: dict[str, tuple[Limit, ...]]
    alerts: dict[str, tuple[UsageAlert, ...]]


def scope_for(state: CustomerState, entity_id: str | None) -> Scope | None:
    """The subject's controls, or None when neither it nor its customer has any (the hot path)."""
    own = state.billing_controls
    if own is NO_CONTROLS and entity_id is None:
        return None  # the shared default: nothing to look at
    entity_controls: BillingControls | None = None
    if entity_id is not None:
        entity = state.entity(entity_id)
        if entity is not None and not entity.billing_controls.empty:
            entity_controls = entity.billing_controls
    if own.empty and entity_controls is None:
        return None
    layers = [own] if entity_controls is None else [own, entity_controls]
    overage: dict[str, bool] = {}
    spend: dict[str, SpendLimit] = {}
    alerts: dict[str, tuple[UsageAlert, ...]] = {}
    for controls in layers:  # the entity's entries come last and win, per feature
        for o in controls.overage_allowed:
            overage[o.feature_id] = o.enabled
        for sl in controls.spend_limits:
            if sl.feature_id is not None:
                spend[sl.feature_id] = sl
        by_feature: dict[str, list[UsageAlert]] = {}
        for a in controls.usage_alerts:
            if a.enabled:
                by_feature.setdefault(a.feature_id, []).append(a)
        alerts.update({k: tuple(v) for k, v in by_feature.items()})
    rules = {}
    for fid in set(overage) | set(spend):
        found = spend.get(fid)
        active = found if found and found.enabled and found.overage_limit is not None else None
        if fid in overage or active is not None:
            rules[fid] = FeatureRule(overage.get(fid), active)
    limits: dict[str, list[Limit]] = {}
    for u in own.usage_limits:
        if u.enabled:
            limits.setdefault(u.feature_id, []).append(Limit(u, None))
    if entity_controls is not None:
        # Both apply: the entity's own window, and the customer's window its usage counts in.
        for u in entity_controls.usage_limits:
            if u.enabled:
                limits.setdefault(u.feature_id, []).append(Limit(u, entity_id))
    return Scope(rules, {k: tuple(v) for k, v in limits.items()}, alerts)


def billing_anchor(rows: Sequence[RowState], feature_id: str, owner: str | None) -> datetime | None:
    """The billing cycle of a window's owner (an entity, or None: the customer): the reset
    anchor of its own resetting row of the feature; for an entity without one, of the
    customer's; else None (calendar windows). Decided by the owner alone, not by who counts
    in the window nor by rows that come and go with other entities: the customer's window is
    shared by its entities, and were its anchor any entity's, a track by another or that
    entity's deletion would find the window starting elsewhere and count it from zero."""
    shared: datetime | None = None
    for r in rows:
        if r.feature_id == feature_id and r.reset is not None:
            if r.entity_id == owner:
                return r.anchor
            if shared is None and r.entity_id is None:
                shared = r.anchor
    return shared


def window_used(
    state: CustomerState, limit: Limit, rows: Sequence[RowState], now: datetime
) -> tuple[datetime, datetime, Decimal]:
    """The current window of a limit and what it has counted so far (``rows``: the customer's
    live rows)."""
    start, end = window_bounds(
        limit.limit, billing_anchor(rows, limit.limit.feature_id, limit.window_entity), now
    )
    w = state.control_state.window(limit.limit.feature_id, limit.window_entity)
    return start, end, w.used if w is not None and w.start == start else ZERO


class Controlled:
    """One call's deductions under the subject's controls."""

    def __init__(
        self, ctx: Context, state: CustomerState, scope: Scope, entity_id: str | None, now: datetime
    ) -> None:
        self.ctx = ctx
        self.state = state
        self.scope = scope
        self.entity_id = entity_id
        self.now = now
        #: (feature, window entity) -> (start, end, used), as counted by this call so far.
        self.windows: dict[tuple[str, str | None], tuple[datetime, datetime, Decimal]] = {}
        #: What this call counted in each window, in the limit feature's units.
        self.deltas: dict[tuple[str, str | None], Decimal] = {}

    @classmethod
    def start(
        cls, ctx: Context, state: CustomerState, entity_id: str | None, now: datetime
    ) -> Controlled | None:
        scope = scope_for(state, entity_id)
        return None if scope is None else cls(ctx, state, scope, entity_id, now)

    # -- usage limits ------------------------------------------------------------------------
    def _pools(self, feature_id: str) -> dict[str, Decimal]:
        """Credit systems that ``feature_id`` draws on, with its cost in each (CS1)."""
        pools = self.ctx.pool_costs.get(feature_id)
        if pools is None:
            pools = {}
            for pool in self.ctx.catalog.pools_of(feature_id):
                system = self.ctx.catalog.feature(pool)
                if system is not None:
                    pools[pool] = system.costs[feature_id]
        return pools

    def _limits(self, feature_id: str, pools: dict[str, Decimal]) -> list[tuple[Limit, Decimal]]:
        """The limits a use of ``feature_id`` counts in, with its cost in each one's units."""
        found = [(lim, Decimal(1)) for lim in self.scope.limits.get(feature_id, ())]
        for pool, cost in pools.items():
            found += [(lim, cost) for lim in self.scope.limits.get(pool, ())]
        return found

    def _window(self, lim: Limit, rows: Sequence[RowState]) -> tuple[datetime, datetime, Decimal]:
        key = (lim.limit.feature_id, lim.window_entity)
        known = self.windows.get(key)
        if known is None:
            known = window_used(self.state, lim, rows, self.now)
            self.windows[key] = known
        return known

    def room(self, feature_id: str, rows: Sequence[RowState]) -> Decimal | None:
        """What the usage limits still allow of ``feature_id`` (None: no limit applies)."""
        pools = self._pools(feature_id)
        room: Decimal | None = None
        for lim, cost in self._limits(feature_id, pools):
            _, _, used = self._window(lim, rows)
            left = max(ZERO, lim.limit.limit - used) / cost
            room = left if room is None else min(room, left)
        return room

    def _count(
        self, feature_id: str, applied: dict[str, Decimal], units: Decimal, rows: Sequence[RowState]
    ) -> None:
        pools = self._pools(feature_id)
        for lim, _ in self._limits(feature_id, pools):
            lf = lim.limit.feature_id
            amount = units if lf == feature_id else applied.get(lf, ZERO)
            if amount == 0:
                continue
            start, end, used = self._window(lim, rows)
            key = (lf, lim.window_entity)
            new = max(ZERO, used + amount)
            self.windows[key] = (start, end, new)
            self.deltas[key] = self.deltas.get(key, ZERO) + new - used

    # -- deductions --------------------------------------------------------------------------
    def govern(self, cands: Sequence[Candidate]) -> Sequence[Candidate]:
        rules = self.scope.rules
        if not rules or not any(c.row.feature_id in rules for c in cands):
            return cands
        return governed(cands, rules)

    def fits(
        self,
        feature_id: str,
        cands: Sequence[Candidate],
        required: Decimal,
        rows: Sequence[RowState],
    ) -> bool:
        """``check``'s decision under the controls: the balance and the usage limits."""
        room = self.room(feature_id, rows)
        if room is not None and required > room:
            return False
        return fits(self.govern(cands), required, self.now)

    def deduct(
        self,
        feature_id: str,
        cands: Sequence[Candidate],
        value: Decimal,
        mode: str,
        rows: Sequence[RowState],
    ) -> Deduction:
        """``deduct`` under the controls; what a usage limit does not allow is the remainder.

        Under "overflow" usage limits do not clamp, and spend limits still apply (Autumn's
        ``overage_behavior``): the deduction then runs as "cap" over the governed rows.
        """
        allowed = value
        if value > 0 and mode != "overflow":
            room = self.room(feature_id, rows)
            if room is not None and value > room:
                if mode == "reject":
                    return Deduction({}, {c.row.feature_id: ZERO for c in cands}, value)
                allowed = room
        gov = self.govern(cands)
        run_mode = mode
        if (
            mode == "overflow"
            and gov is not cands
            and any(
                self.scope.rules.get(c.row.feature_id, FeatureRule()).spend is not None
                for c in cands
            )
        ):
            run_mode = "cap"
        result = deduct(gov, allowed, run_mode, self.now)
        if gov is not cands:
            result = restore(result, {c.row.id: c.row for c in cands})
        # Units taken (a refund: given back), in units of the tracked feature.
        taken = allowed - result.remainder if value > 0 else value + result.remainder
        self._count(feature_id, result.applied, taken, rows)
        if value > 0 and allowed < value:
            result = Deduction(
                result.changed,
                result.applied,
                result.remainder + (value - allowed),
                result.absorbed_by_unlimited,
            )
        return result

    def counted(self) -> tuple[tuple[str, str | None, datetime, Decimal], ...]:
        """(feature, window entity, window start, units) this call counted (a hold keeps it,
        so that its release un-counts exactly that)."""
        return tuple(
            (fid, we, self.windows[(fid, we)][0], units)
            for (fid, we), units in self.deltas.items()
            if units
        )

    def finish(self, state: CustomerState) -> CustomerState:
        """``state`` with this call's usage-window counters written."""
        if not self.windows:
            return state
        cs = state.control_state
        windows = {(w.feature_id, w.entity_id): w for w in cs.windows}
        changed = False
        for (fid, we), (start, end, used) in self.windows.items():
            old = windows.get((fid, we))
            if old is not None and old.start == start and old.used == used:
                continue
            if old is None and used == 0:
                continue
            windows[(fid, we)] = UsageWindow(fid, we, start, end, used)
            changed = True
        if not changed:
            return state
        return replace(state, control_state=cs.with_windows(tuple(windows.values())))
