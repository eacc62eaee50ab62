"""``customer.trial_ending`` (docs/rules.md EO6): once per trial, a set time before it ends.

``process_due`` asks the store for the customers due by ``now + notice`` (a running trial's end
is one of a customer's due times, so every trial ending within the notice is among them), reads
them, and writes only for those with a trial ending in the window. A store-enforced marker
(the renewal marker table, keyed ``trial_ending:<instance>`` at the trial's end) makes the notice
once-only across processes and repeated calls.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from autumn_core.app.context import Context
from autumn_core.app.unit import Unit
from autumn_core.model import CustomerState, ProductState
from autumn_core.outbound import CUSTOMER_TRIAL_ENDING, millis
from autumn_core.ports import StoreTransaction

MARKER = "trial_ending:"


def _ending(state: CustomerState, now: datetime, horizon: datetime) -> list[ProductState]:
    return [
        p
        for p in state.products
        if p.trial_ends_at is not None and p.is_trialing(now) and p.trial_ends_at <= horizon
    ]


def candidates(ctx: Context, now: datetime, notice: timedelta) -> list[str]:
    """Customers with a trial ending within ``notice`` of ``now`` (one read transaction)."""
    horizon = now + notice

    def read(tx: StoreTransaction) -> list[str]:
        out = []
        for pk in tx.due_customer_pks(horizon, None):
            state = tx.load_customer(pk)
            if state is not None and _ending(state, now, horizon):
                out.append(pk)
        return out

    return ctx.run(read, write=False)


def notifier(pk: str, notice: timedelta) -> Callable[[Unit], int]:
    """The write that emits one customer's notices due now (returns how many)."""
    return lambda unit: notify(unit, pk, notice)


def notify(unit: Unit, pk: str, notice: timedelta) -> int:
    """Emit the notices due for one customer; return how many."""
    if unit.tx.load_customer(pk) is None:  # deleted since it was listed
        return 0
    state = unit.find_pk(pk)
    sent = 0
    for p in _ending(state, unit.now, unit.now + notice):
        ends = p.trial_ends_at
        if ends is None or not unit.tx.claim_renewal(MARKER + p.instance_id, ends):
            continue
        unit.emit(
            CUSTOMER_TRIAL_ENDING,
            {
                "product_id": p.product_id,
                "trial_ends_at": millis(ends),
                "days_left": (ends - unit.now).days,
            },
            customer_id=state.id,
            entity_id=p.entity_id,
        )
        sent += 1
    return sent
