"""Pending operations and ``recover()`` on MemoryStore + MemoryGateway (issue 6, "no lost or
double charges").

A crash is played in-process: a gateway that raises ``Crash`` (a BaseException, as a kill is
not an error the engine may handle) before or after the provider took the charge. The store
keeps what was committed, the gateway keeps what it charged, as a real process death would.
"""

from __future__ import annotations

from typing import Any

import pytest

from autumn_core import Autumn, ManualClock
from autumn_core.ports import ChargeOutcome, ChargeRequest
from autumn_memory import MemoryGateway

from .conftest import D, Factory, statuses, totals


class Crash(BaseException):
    """The process dies here."""


class Recording(MemoryGateway):
    """Records every charge request; ``crash`` = "before" / "after" the next charge."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests: list[ChargeRequest] = []
        self.crash: str | None = None

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        self.requests.append(request)
        if self.crash == "before":
            self.crash = None
            raise Crash
        outcome = super().charge(request)
        if self.crash == "after":
            self.crash = None
            raise Crash
        return outcome


@pytest.fixture
def gw() -> Recording:
    return Recording()


@pytest.fixture
def engine(make: Factory, gw: Recording) -> Autumn:
    billing = make(gateway=gw)
    billing.customers.create("c")
    return billing


def paid_invoices(gw: MemoryGateway) -> list[Any]:
    return [i.total for i in gw.invoices.values() if i.status == "paid"]


def test_memory_gateway_replays_a_known_key_and_tells_an_unknown_one() -> None:
    # given a gateway customer charged once with key "k"
    gw = MemoryGateway()
    gid = gw.create_customer(customer_id="c", email=None, name=None, idempotency_key="ck")
    req = ChargeRequest(gid, "inv_1", (), D("20"), "usd", "k")
    first = gw.charge(req)
    # when the same key is charged again, and looked up
    again = gw.charge(req)
    # then the first outcome comes back and one invoice exists; an unknown key is None
    assert again == first and first.status == "paid"
    assert len(gw.invoices) == 1
    assert gw.find_charge(req) == first
    assert gw.find_charge(ChargeRequest(gid, "inv_2", (), D("20"), "usd", "other")) is None


def test_a_crash_after_the_charge_is_completed_by_recover(engine: Autumn, gw: Recording) -> None:
    # given an attach whose process dies once the provider has charged
    gw.crash = "after"
    with pytest.raises(Crash):
        engine.attach("c", "pro", idempotency_key="a1")
    assert statuses(engine) == {"free": "active"} and paid_invoices(gw) == [D("20")]
    # when recover() runs
    assert engine.recover() == 1
    # then the attach is committed once, with the provider's invoice, and the retry replays
    assert statuses(engine) == {"pro": "active"}
    [invoice] = engine.invoices.list("c")
    assert (invoice.total, invoice.status) == (D("20.00"), "paid")
    assert invoice.gateway_invoice_id == next(iter(gw.invoices))
    assert engine.attach("c", "pro", idempotency_key="a1").replayed
    assert paid_invoices(gw) == [D("20")]
    assert engine.recover() == 0


def test_a_crash_before_the_provider_got_the_charge_is_rolled_back(
    engine: Autumn, gw: Recording
) -> None:
    # given an attach whose process dies after its pending record, before the provider call
    gw.crash = "before"
    with pytest.raises(Crash):
        engine.attach("c", "pro", idempotency_key="a1")
    # when recover() runs
    assert engine.recover() == 1
    # then nothing is provisioned or charged, and the caller's retry charges once
    assert statuses(engine) == {"free": "active"}
    assert engine.invoices.list("c") == [] and paid_invoices(gw) == []
    assert not engine.attach("c", "pro", idempotency_key="a1").replayed
    assert paid_invoices(gw) == [D("20")] and totals(engine) == [D("20.00")]


def test_a_retry_with_the_same_key_resumes_the_pending_operation(
    engine: Autumn, gw: Recording
) -> None:
    # given a crash after the charge and no recover() yet
    gw.crash = "after"
    with pytest.raises(Crash):
        engine.attach("c", "pro", idempotency_key="a1")
    # when the caller retries with the same idempotency key
    result = engine.attach("c", "pro", idempotency_key="a1")
    # then the same gateway key is sent again (replayed there) and the attach commits once
    assert gw.requests[0].idempotency_key == gw.requests[1].idempotency_key
    assert result.product is not None and result.product.status == "active"
    assert paid_invoices(gw) == [D("20")] and totals(engine) == [D("20.00")]
    assert engine.recover() == 0


def test_operation_keys_derive_from_the_caller_key_per_customer(
    make: Factory, gw: Recording
) -> None:
    # given two customers attaching with the same idempotency key, and one without a key
    billing = make(gateway=gw)
    billing.attach("c", "pro", idempotency_key="same")
    billing.attach("d", "pro", idempotency_key="same")
    billing.attach("e", "pro")
    # then each charge key is "attach:<operation id>:<attempt>", the operation id per customer
    ops = [r.idempotency_key.split(":")[1] for r in gw.requests]
    assert [r.idempotency_key.split(":")[0] for r in gw.requests] == ["attach"] * 3
    assert ops[0] != ops[1] and ops[0].startswith("k") and ops[2].startswith("op_")
    assert [r.reason for r in gw.requests] == ["attach"] * 3
    assert gw.requests[0].period_end == billing.customers.get("c").products[0].current_period_end


def test_a_declined_charge_leaves_no_pending_operation(engine: Autumn, gw: Recording) -> None:
    # given a declined attach
    gw.decline_next()
    with pytest.raises(Exception):  # noqa: B017 - PaymentFailed
        engine.attach("c", "pro", idempotency_key="a1")
    # then nothing is left to recover, and the retry is a new charge that succeeds
    assert engine.recover() == 0
    assert not engine.attach("c", "pro", idempotency_key="a1").replayed
    assert gw.requests[0].idempotency_key != gw.requests[1].idempotency_key
    assert paid_invoices(gw) == [D("20")]


def test_reasons_name_switches_and_cancel_credits(engine: Autumn, gw: Recording) -> None:
    # given pro, then an upgrade to premium, then an immediate cancel
    engine.attach("c", "pro")
    engine.attach("c", "premium")
    engine.cancel("c", "premium", immediately=True)
    # then the provider is told why each charge happens
    assert [r.reason for r in gw.requests] == ["attach", "switch", "cancel"]


def test_a_crash_after_an_immediate_cancel_credit_is_completed(
    engine: Autumn, gw: Recording
) -> None:
    # given pro, and an immediate cancel whose process dies after the credit was recorded
    engine.attach("c", "pro")
    gw.crash = "after"
    with pytest.raises(Crash):
        engine.cancel("c", "pro", immediately=True)
    # when recover() runs
    assert engine.recover() == 1
    # then the cancel is committed with its credit invoice, once
    assert statuses(engine) == {"free": "active"}
    assert totals(engine) == [D("20.00"), D("-20.00")]
    assert engine.recover() == 0


def test_recover_older_than_leaves_operations_that_may_still_be_in_flight(
    billing: Autumn, clock: ManualClock
) -> None:
    from datetime import timedelta

    from autumn_core import InvalidRequest
    from autumn_core.app import billing as billing_uc
    from autumn_core.model import PendingRecord

    with billing.store.transaction() as tx:
        tx.put_pending(PendingRecord("op-young", "cus_x", billing_uc.OPERATION, {}, clock.now()))
    # Given a pending operation written a minute ago by a process that may still be charging,
    clock.advance(minutes=1)
    # when recover() is told to settle only operations older than ten minutes,
    assert billing.recover(older_than=timedelta(minutes=10)) == 0
    # then the record is left alone.
    with billing.store.transaction(write=False) as tx:
        assert tx.get_pending("op-young") is not None
    with pytest.raises(InvalidRequest):
        billing.recover(older_than=timedelta(seconds=-1))
