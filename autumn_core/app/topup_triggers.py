"""Arming auto top-ups (docs/rules.md TU1, TU2): the unit of work that takes a customer's
balance of a feature below its auto top-up threshold writes a trigger, in the same transaction.

The trigger is a pending record keyed by (customer, feature): at most one exists at a time, so a
crossing arms one top-up however many calls race past the threshold, and a balance that stays
below arms nothing more. The top-up itself (``app/topups.py``) runs after the commit, outside
the transaction, through the operation saga; a trigger left by a crashed process is run by
``process_due``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from autumn_core.app.context import Context, new_id
from autumn_core.app.views import live_rows
from autumn_core.controls import AutoTopup
from autumn_core.model import CustomerState, PendingRecord
from autumn_core.ports import StoreTransaction
from autumn_core.rules.balance_view import balance_view

#: ``PendingRecord.kind`` of an armed auto top-up.
KIND = "auto_topup"


def trigger_key(customer_pk: str, feature_id: str) -> str:
    return f"topup:{customer_pk}:{feature_id}"


def remaining(ctx: Context, state: CustomerState, feature_id: str, now: datetime) -> Decimal | None:
    """The customer-level remaining balance of a feature (None: unlimited, or no balance)."""
    rows = [r for r in live_rows(ctx, state, now) if r.feature_id == feature_id]
    if not rows or any(r.unlimited for r in rows):
        return None
    ftype = ctx.registry.feature_types.get(feature_id)
    if ftype is None or ftype == "boolean":
        return None
    return balance_view(feature_id, ftype, rows, now).remaining


def enabled(state: CustomerState) -> tuple[AutoTopup, ...]:
    return tuple(t for t in state.billing_controls.auto_topups if t.enabled)


def arm(
    ctx: Context,
    tx: StoreTransaction,
    before: CustomerState | None,
    after: CustomerState,
    now: datetime,
) -> list[str]:
    """Write a trigger for each enabled top-up whose threshold ``after`` is below and ``before``
    was not (TU1); a top-up enabled, or first configured, while already below counts as a
    crossing. Returns the trigger keys written."""
    armed: list[str] = []
    was = {} if before is None else {t.feature_id: t for t in enabled(before)}
    for topup in enabled(after):
        now_left = remaining(ctx, after, topup.feature_id, now)
        if now_left is None or now_left >= topup.threshold:
            continue
        if before is not None and was.get(topup.feature_id) == topup:
            then = remaining(ctx, before, topup.feature_id, now)
            if then is None or then < topup.threshold:
                continue  # already below: this is not a crossing
        key = trigger_key(after.pk, topup.feature_id)
        if tx.get_pending(key) is not None:
            continue  # armed already (a top-up of this crossing is on its way)
        tx.put_pending(
            PendingRecord(
                key,
                after.pk,
                KIND,
                {
                    "trigger": new_id("tu"),
                    "feature_id": topup.feature_id,
                    "threshold": str(topup.threshold),
                    "balance": str(now_left),
                },
                now,
            )
        )
        armed.append(key)
    return armed
