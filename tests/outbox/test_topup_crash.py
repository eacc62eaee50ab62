"""An auto top-up killed at each step of its charge is charged once (docs/rules.md TU2), on
every store: the crash points of the attach's crash tests (tests/lifecycle/test_recover.py,
tests/stripe/test_crash.py): after the operation record and before the provider call, after
the provider charged, and just before the local commit.

A crash is played in-process, as in test_recover.py: ``Crash`` is a BaseException the engine
may not handle. The store keeps what was committed and the gateway what it charged, as a real
process death would; a fresh ``recover()`` and ``process_due()`` then settle the top-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import Autumn, ManualClock
from autumn_core.ports import ChargeOutcome, ChargeRequest, Store
from autumn_memory import MemoryGateway
from tests.conftest import StoreFactory

from .test_topups import TOPUP, remaining, topup_catalog, topup_events, topup_invoices

D = Decimal
STEPS = ("before_charge", "after_charge", "before_commit")


class Crash(BaseException):
    """The process dies here."""


class Killing(MemoryGateway):
    """Dies at ``step`` of the next top-up charge."""

    def __init__(self) -> None:
        super().__init__()
        self.step: str | None = None
        self.charged = False

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        topup = request.reason == "auto_topup"
        if topup and self.step == "before_charge":
            self.step = None
            raise Crash
        outcome = super().charge(request)
        if topup:
            self.charged = True
            if self.step == "after_charge":
                self.step = None
                raise Crash
        return outcome

    def topups_paid(self) -> list[Decimal]:
        return [i.total for i in self.invoices.values() if i.status == "paid" and i.total == 10]


class KillBeforeCommit:
    """Wraps the store: the first write transaction after a top-up charge dies un-committed."""

    def __init__(self, store: Store, gateway: Killing) -> None:
        self.store = store
        self.gateway = gateway
        self.capabilities = store.capabilities

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        with self.store.transaction(write=write) as tx:
            yield tx
            if write and self.gateway.charged and self.gateway.step == "before_commit":
                self.gateway.step = None
                raise Crash

    def close(self) -> None:
        self.store.close()


@pytest.mark.parametrize("step", STEPS)
def test_a_top_up_killed_at_any_step_is_charged_once(
    new_store: StoreFactory, clock: ManualClock, step: str
) -> None:
    # given ann with a top-up of 1,000 credits below 500, and a process that dies at `step`
    gateway = Killing()
    store = new_store()
    billing = Autumn(topup_catalog(), store=store, gateway=gateway, clock=clock)
    billing.customers.create("ann", billing_controls={"auto_topups": [TOPUP]})
    billing.attach("ann", "standard")
    dying = Autumn(
        topup_catalog(), store=KillBeforeCommit(store, gateway), gateway=gateway, clock=clock
    )  # type: ignore[arg-type]
    gateway.step = step
    # when usage crosses the threshold and the process dies during the top-up
    with pytest.raises(Crash):
        dying.track("ann", "credits", value=4600)
    # then the usage itself is committed, the top-up not yet
    assert remaining(billing) == D(400)
    assert topup_invoices(billing) == []
    # when a fresh process recovers, and runs process_due after the dead runner's lease
    billing.recover()
    clock.advance(minutes=11)
    billing.process_due()
    billing.recover()
    billing.process_due()
    # then the top-up was charged once and granted once, and reported once
    assert gateway.topups_paid() == [D(10)]
    assert topup_invoices(billing) == [(D("10.00"), "paid")]
    assert remaining(billing) == D(1400)
    assert [e["type"] for e in topup_events(billing)] == ["billing.auto_topup_succeeded"]


def test_a_runner_that_outlived_its_lease_does_not_charge_again(
    new_store: StoreFactory, clock: ManualClock
) -> None:
    # given a top-up whose first runner died after the provider charged
    gateway = Killing()
    billing = Autumn(topup_catalog(), store=new_store(), gateway=gateway, clock=clock)
    billing.customers.create("ann", billing_controls={"auto_topups": [TOPUP]})
    billing.attach("ann", "standard")
    gateway.step = "after_charge"
    with pytest.raises(Crash):
        billing.track("ann", "credits", value=4600)
    # when process_due runs before the lease ends, then after it, without recover()
    billing.process_due()
    assert gateway.topups_paid() == [D(10)] and remaining(billing) == D(400)
    clock.advance(minutes=11)
    billing.process_due()
    # then the new runner resumes the same charge (same key: the provider replays it)
    assert gateway.topups_paid() == [D(10)]
    assert remaining(billing) == D(1400)
    assert billing.recover() == 0
