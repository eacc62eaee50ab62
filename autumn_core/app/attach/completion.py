"""Completing a checkout (W2-W4): the gateway reported the payment of a stored plan, or its
failure.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from autumn_core.app.attach.args import AttachArgs
from autumn_core.app.attach.execution import claim_or_replan, provision
from autumn_core.app.attach.planning import plan_attach
from autumn_core.app.unit import Unit
from autumn_core.catalog import FreeTrial
from autumn_core.errors import ProductAlreadyAttached
from autumn_core.model import PendingRecord
from autumn_core.results import UNSET
from autumn_core.serialization import converter


def complete_pending(unit: Unit, pending: PendingRecord, gateway_invoice_id: str | None) -> bool:
    """W2/W3: carry out a stored checkout plan, re-classified now and without charging again."""
    payload = pending.payload
    state = unit.find_pk(pending.customer_pk)
    unit.tx.delete_pending(pending.key)
    product = unit.ctx.registry.product(payload["product_id"])
    if product is None:
        return False
    raw_trial = payload.get("free_trial", "unset")
    free_trial: Any = (
        UNSET
        if raw_trial == "unset"
        else (None if raw_trial is None else converter.structure(raw_trial, FreeTrial))
    )
    quantities = payload.get("quantities")
    a = AttachArgs(
        state.id,
        product,
        payload.get("entity_id"),
        None if quantities is None else {k: Decimal(v) for k, v in quantities.items()},
        free_trial,
        None,
        False,
        None,
        None,
    )
    if a.entity_id is not None and state.entity(a.entity_id) is None:
        return False
    try:
        plan = plan_attach(unit, state, a)
    except ProductAlreadyAttached:
        return False  # already provisioned: a repeat of the same payment
    plan = claim_or_replan(unit, state, a, plan)
    provision(unit, a, plan, state, paid_invoice_id=gateway_invoice_id or "checkout")
    return True


def fail_pending(unit: Unit, pending: PendingRecord) -> None:
    """W4: a failed first charge never provisions; the plan is dropped."""
    unit.tx.delete_pending(pending.key)
