"""Auto top-ups (docs/rules.md TU1-TU5): buy a configured quantity of a feature when the
customer's balance fell below the threshold, through the gateway, once per crossing.

A top-up is an operation of the charge saga (``billing.drive``), like a paid attach: its charge
key derives from the trigger (``topup:<trigger id>``); the pending operation record is written
before the gateway is called, and the grant, the invoice, the trigger's removal and the event
are committed together after it. A process killed at any step leaves either the trigger (run
again by ``process_due``: the provider never saw the charge, or it replays the first outcome for
the same key) or the operation record (settled by ``recover()``): the customer is charged once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

import attrs

from autumn_core.app import billing
from autumn_core.app.billing.saga import STALE_AFTER
from autumn_core.app.context import Context, new_id
from autumn_core.app.topup_triggers import KIND, enabled, remaining
from autumn_core.app.unit import Unit
from autumn_core.catalog import Item
from autumn_core.controls import AutoTopup, PurchaseLimit
from autumn_core.model import CustomerState, InvoiceRecord, PendingRecord, ProductState, RowState
from autumn_core.outbound import BILLING_AUTO_TOPUP_FAILED, BILLING_AUTO_TOPUP_SUCCEEDED
from autumn_core.ports import StoreTransaction
from autumn_core.rules.periods import add_months
from autumn_core.rules.pricing import packs_amount

#: The description every top-up invoice line starts with (the purchase limit counts them).
LINE = "Auto top-up"
_SPANS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


def run(ctx: Context, key: str) -> str | None:
    """Run the top-up armed under ``key``; return its outcome ("succeeded", a failure reason,
    or None when there was nothing to do: no trigger, another runner has it, or the balance is
    back above)."""
    runner = _take(ctx, key)
    if runner is None:
        return None
    payload = {"op": "auto_topup", "trigger_key": key}
    drv = billing.Driver(now=ctx.clock.now(), prefixes=("topup:",), payload=payload)
    return billing.drive(ctx, drv, lambda unit: top_up(unit, key, runner))


def _take(ctx: Context, key: str) -> str | None:
    """TU2: lease the trigger to this runner, so two runners (a track's and ``process_due``'s)
    never both plan a charge for it; a dead runner's lease ends after ``STALE_AFTER``
    and the next runner resumes its charge with the same key."""
    runner = new_id("run")
    now = ctx.clock.now()

    def take(tx: StoreTransaction) -> str | None:
        trigger = tx.get_pending(key)
        if trigger is None:
            return None
        until = trigger.payload.get("leased_until")
        if until is not None and datetime.fromisoformat(str(until)) > now:
            return None
        leased = {
            **trigger.payload,
            "runner": runner,
            "leased_until": (now + STALE_AFTER).isoformat(),
        }
        tx.put_pending(attrs.evolve(trigger, payload=leased))
        return runner

    return ctx.run(take, write=True)


def run_armed(ctx: Context, keys: list[str]) -> None:
    """Run armed top-ups after the write that armed them committed. That write succeeded, so
    a top-up that cannot run now (the provider unreachable, the store busy) does not fail it:
    its trigger stays, and ``process_due`` runs it later. Whatever it raises (a gateway's own
    error included): raised here, it would tell the caller that its committed write failed,
    and a retry of it would count the usage twice."""
    for key in keys:
        try:
            run(ctx, key)
        except Exception:  # the trigger stays: process_due runs it again
            continue


def pending(ctx: Context) -> list[str]:
    """Every armed trigger (a crashed process's, or one whose run failed to reach the store)."""
    records: list[PendingRecord] = ctx.run(lambda tx: tx.list_pending(KIND), write=False)
    return [r.key for r in records]


def top_up(unit: Unit, key: str, runner: str | None) -> str | None:
    """The operation's body (run again by the saga after its charge, and by ``recover()``,
    which passes no runner: it completes a charge already made, whoever made it)."""
    trigger = unit.tx.get_pending(key)
    if trigger is None:
        return None  # done (or dropped) by another run
    if runner is not None and trigger.payload.get("runner") != runner:
        return None  # another runner took it over (this one outlived its lease)
    state = unit.find_pk(trigger.customer_pk)
    feature_id = str(trigger.payload["feature_id"])
    unit.tx.delete_pending(key)
    config = next((t for t in enabled(state) if t.feature_id == feature_id), None)
    before = remaining(unit.ctx, state, feature_id, unit.now)
    if config is None:
        return _failed(unit, state, trigger.payload, None, before, "configuration_unavailable")
    if before is None or before >= config.threshold:
        return None  # back above the threshold (a grant, a reset) since it was armed
    source = _price(unit.ctx, state, feature_id)
    if source is None:
        return _failed(unit, state, trigger.payload, config, before, "missing_customer_product")
    if config.purchase_limit is not None and _reached(unit, state, config.purchase_limit):
        return _failed(unit, state, trigger.payload, config, before, "purchase_limit_reached")
    cp, item = source
    packs = (config.quantity / item.billing_units).to_integral_value(rounding=ROUND_CEILING)
    granted = packs * item.billing_units
    lines = [
        billing.line(
            f"{LINE}: {granted} {feature_id}",
            packs_amount(item, packs),
            product_id=cp.product_id,
            feature_id=feature_id,
            quantity=granted,
        )
    ]
    gateway, gid = unit.ctx.gateway, state.gateway_customer_id
    if gateway is not None and gid is not None and not gateway.has_payment_method(gid):
        return _failed(unit, state, trigger.payload, config, before, "missing_payment_method")
    sent = billing.charge(
        unit,
        state,
        lines,
        cp_id=cp.instance_id,
        key=f"topup:{trigger.payload['trigger']}",
        description=f"{LINE} of {granted} {feature_id}",
        reason="auto_topup",
    )
    state = billing.adopt(state, sent)
    if sent.outcome not in ("paid", "local"):
        # Declined, or the provider wants the customer present: nothing is owed, nothing granted.
        unit.invoices.append(sent.invoice)
        unit.put(state)
        reason = "charge_failed" if sent.outcome == "failed" else "missing_payment_method"
        return _failed(unit, state, trigger.payload, config, before, reason)
    state = attrs.evolve(state, rows=(*state.rows, _grant(feature_id, granted, unit.now)))
    unit.put(state)
    unit.invoices.append(sent.invoice)
    after = remaining(unit.ctx, state, feature_id, unit.now)
    unit.emit(
        BILLING_AUTO_TOPUP_SUCCEEDED,
        {
            "feature_id": feature_id,
            "quantity_granted": granted,
            "threshold": config.threshold,
            "balance_after": after,
            "invoice_mode": False,
            "invoice": _invoice(sent.invoice),
        },
        customer_id=state.id,
    )
    return "succeeded"


def _price(ctx: Context, state: CustomerState, feature_id: str) -> tuple[ProductState, Item] | None:
    """TU3: the one-off prepaid price of the feature on a live product the customer holds
    (the customer's own, not an entity's), the first in product order."""
    for cp in state.products:
        if not cp.is_live or cp.entity_id is not None:
            continue
        product = billing.product_of(ctx, cp)
        for item in product.priced_items:
            if item.feature_id == feature_id and item.is_prepaid and item.interval == "one_off":
                return cp, item
    return None


def _reached(unit: Unit, state: CustomerState, limit: PurchaseLimit) -> bool:
    """TU4: ``limit.limit`` paid top-ups in the rolling window that ends now."""
    since = _window_start(unit.now, limit)
    paid = [
        inv
        for inv in unit.tx.list_invoices(state.pk)
        if inv.status == "paid"
        and inv.created_at > since
        and any(ln.description.startswith(LINE) for ln in inv.lines)
    ]
    return len(paid) >= limit.limit


def _window_start(now: datetime, limit: PurchaseLimit) -> datetime:
    if limit.interval == "month":
        return add_months(now, -limit.interval_count)
    return now - _SPANS[limit.interval] * limit.interval_count


def _grant(feature_id: str, amount: Decimal, now: datetime) -> RowState:
    """A one-off balance outside any product (as ``balances.grant``): it never resets."""
    return RowState(
        id=new_id("row"),
        feature_id=feature_id,
        created_at=now,
        granted=amount,
        balance=amount,
        add_on=True,
        anchor=now,
        included=amount,
    )


def _invoice(inv: InvoiceRecord) -> dict[str, Any]:
    return {
        "id": inv.id,
        "gateway_invoice_id": inv.gateway_invoice_id,
        "status": inv.status,
        "total": inv.total,
        "currency": inv.currency,
    }


def _failed(
    unit: Unit,
    state: CustomerState,
    trigger: Mapping[str, Any],
    config: AutoTopup | None,
    balance: Decimal | None,
    reason: str,
) -> str:
    """TU5: ``billing.auto_topup_failed``; the trigger is gone, so the next crossing re-arms."""
    unit.emit(
        BILLING_AUTO_TOPUP_FAILED,
        {
            "feature_id": str(trigger["feature_id"]),
            "reason": reason,
            "quantity": None if config is None else config.quantity,
            "threshold": None if config is None else config.threshold,
            "balance": balance,
            "invoice_mode": None if config is None else config.invoice_mode,
        },
        customer_id=state.id,
    )
    return reason
