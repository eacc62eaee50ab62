"""Signals of a balance change: limit reached and usage alerts, once per crossing (BC4, BC6).

A signal fires when its condition turns true between the state a write started from and the
state it saves: the store serializes writes to one customer, so each crossing is seen by
exactly one write, and fires once, whatever the concurrency. A condition that turns false
again (a reset, a refund, a raised limit) arms it for the next crossing. Signals are emitted
through the unit's outbox (``Unit.emit``), in the transaction of the change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from autumn_core.app.context import Context
from autumn_core.app.limits import Limit, Scope, scope_for, window_used
from autumn_core.app.unit import Unit
from autumn_core.app.views import live_rows
from autumn_core.controls import UsageAlert
from autumn_core.model import ZERO, CustomerState, RowState
from autumn_core.outbound import BALANCES_LIMIT_REACHED, BALANCES_USAGE_ALERT_TRIGGERED
from autumn_core.rules.deduction import Candidate
from autumn_core.rules.limits import AlertFigures, FeatureRule, alert_raised, block_reason, governed
from autumn_core.rules.order import sees

CandidateFinder = Callable[[Context, Sequence[RowState], str, str | None], Sequence[Candidate]]


def after_change(
    unit: Unit,
    before: CustomerState,
    after: CustomerState,
    entity_id: str | None,
    feature_ids: Iterable[str],
    candidates: CandidateFinder,
) -> None:
    """Emit the signals whose condition this write made true, for the features it touched.

    ``candidates`` is ``app.usage.candidates`` (the use case that calls this service)."""
    ctx = unit.ctx
    now = unit.now
    scope = scope_for(after, entity_id)
    rows_before = live_rows(ctx, before, now)
    rows_after = live_rows(ctx, after, now)
    for fid in dict.fromkeys(feature_ids):
        if ctx.registry.feature_types.get(fid) == "boolean":
            continue
        was = _blocked(
            ctx,
            before,
            scope,
            fid,
            entity_id,
            candidates(ctx, rows_before, fid, entity_id),
            rows_before,
            now,
        )
        now_blocked = _blocked(
            ctx,
            after,
            scope,
            fid,
            entity_id,
            candidates(ctx, rows_after, fid, entity_id),
            rows_after,
            now,
        )
        if now_blocked is not None and was is None:
            unit.emit(
                BALANCES_LIMIT_REACHED,
                {"feature_id": fid, "limit_type": now_blocked},
                customer_id=after.id,
                entity_id=entity_id,
            )
        if scope is None:
            continue
        for alert in scope.alerts.get(fid, ()):
            fig_before = _figures(before, scope, alert, rows_before, entity_id, now)
            fig_after = _figures(after, scope, alert, rows_after, entity_id, now)
            if fig_after is None or not alert_raised(alert, fig_after):
                continue
            if fig_before is not None and alert_raised(alert, fig_before):
                continue
            data: dict[str, object] = {
                "feature_id": fid,
                "usage_alert": {
                    "name": alert.name,
                    "threshold": alert.threshold,
                    "threshold_type": alert.threshold_type,
                },
            }
            unit.emit(
                BALANCES_USAGE_ALERT_TRIGGERED, data, customer_id=after.id, entity_id=entity_id
            )


def _blocked(
    ctx: Context,
    state: CustomerState,
    scope: Scope | None,
    feature_id: str,
    entity_id: str | None,
    cands: Sequence[Candidate],
    rows: Sequence[RowState],
    now: datetime,
) -> str | None:
    """The limit that blocks any further use of the feature for the subject, if one does."""
    if scope is not None:
        for lim in _own_limits(scope, feature_id):
            _, _, used = window_used(state, lim, rows, now)
            if used >= lim.limit.limit:
                return "usage_limit"
    rules: dict[str, FeatureRule] = {} if scope is None else scope.rules
    gov = governed(cands, rules) if rules else cands
    return block_reason(gov, rules, now)


def _own_limits(scope: Scope, feature_id: str) -> tuple[Limit, ...]:
    return scope.limits.get(feature_id, ())


def _figures(
    state: CustomerState,
    scope: Scope,
    alert: UsageAlert,
    rows: Sequence[RowState],
    entity_id: str | None,
    now: datetime,
) -> AlertFigures | None:
    fid = alert.feature_id
    if alert.basis == "usage_limit":
        limits = _own_limits(scope, fid)
        if not limits:
            return None
        lim = limits[-1]  # the entity's own limit when it has one
        _, _, used = window_used(state, lim, rows, now)
        return AlertFigures(used, lim.limit.limit - used, lim.limit.limit)
    mine = [r for r in rows if r.feature_id == fid and sees(r, entity_id) and not r.unlimited]
    if not mine:
        return None
    granted = balance = ZERO
    for r in mine:
        granted += r.granted
        balance += r.balance
        for ro in r.rollovers:
            if ro.expires_at is None or ro.expires_at > now:
                granted += ro.amount
                balance += ro.balance
    basis: Decimal = granted
    if alert.basis == "included":
        basis = sum((r.included for r in mine), ZERO)
    elif alert.basis == "recurring":
        basis = sum((r.granted for r in mine if r.reset is not None), ZERO)
    return AlertFigures(granted - balance, balance, basis)
