"""SIGKILL at each step of a paid attach, then ``recover()`` and the caller's retry.

The child process (crash_child.py) attaches a paid product through the real StripeGateway on
localstripe and a SQLite file, and kills itself after the Stripe customer exists, after Stripe
charged, or just before the local commit. A new engine on the same file then runs
``recover()`` and the caller retries the attach with the same idempotency key.

The attach's pending operation record is committed before Stripe is called, so after a kill
past that point ``recover()`` finds it and asks ``StripeGateway.find_charge`` (read-only, by the
charge key Stripe's objects carry) what became of it: charged -> the attach is committed and the
caller's retry replays the stored result; never received (killed between the record and the
Stripe call) -> the operation is rolled back, nothing is charged at recovery, and the caller's
retry is a new attach. A kill before the record (the Stripe customer exists, nothing else) leaves
nothing to recover, and the retry attaches normally, finding the same Stripe customer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import stripe

from autumn_core import Autumn
from autumn_sqlite import SqliteStore

from .conftest import LocalStripe
from .crash_child import gateway
from .helpers import all_subscriptions, as_dict, catalog, collected, invoices

pytestmark = [pytest.mark.stripe, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["after_customer", "after_charge", "before_commit"]


def crash_then_retry(ls: LocalStripe, tmp_path: Path, step: str) -> tuple[Autumn, Any]:
    db = tmp_path / "crash.db"
    gw = gateway(ls.base)
    billing = Autumn(catalog(), store=SqliteStore(db), gateway=gw)
    billing.customers.create("c1", email="c1@example.com")
    billing.close()

    child = subprocess.run(
        [sys.executable, "-m", "tests.stripe.crash_child", str(db), ls.base, step],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -9, (child.returncode, child.stdout, child.stderr[-2000:])

    billing = Autumn(catalog(), store=SqliteStore(db), gateway=gw)
    settled = billing.recover()
    recorded = step != "after_customer"  # the pending record was committed before Stripe
    assert settled == (1 if recorded else 0)
    assert billing.customers.get("c1").has_product("pro") is recorded
    again = billing.attach("c1", "pro", idempotency_key="attach-1")
    assert again.replayed is recorded
    assert billing.recover() == 0  # nothing left pending
    return billing, gw.client


def stripe_customers(client: stripe.StripeClient, cid: str) -> list[str]:
    found = client.v1.customers.list({"email": f"{cid}@example.com", "limit": 100}).data
    return [c.id for c in found if as_dict(c)["metadata"].get("autumn_customer_id") == cid]


@pytest.mark.parametrize("step", STEPS)
def test_one_stripe_customer_and_one_subscription_and_local_state_matching(
    ls: LocalStripe, tmp_path: Path, step: str
) -> None:
    billing, client = crash_then_retry(ls, tmp_path, step)
    [gid] = stripe_customers(client, "c1")
    live = [s for s in all_subscriptions(client, gid) if s["status"] == "active"]
    assert len(live) == 1
    assert [i["plan"]["amount"] for i in live[0]["items"]["data"]] == [2000]
    customer = billing.customers.get("c1")
    assert customer.gateway_customer_id == gid
    assert customer.has_product("pro")
    assert [p.status for p in customer.products if p.id == "pro"] == ["active"]
    billing.close()


@pytest.mark.parametrize("step", STEPS)
def test_the_attach_is_charged_exactly_once(ls: LocalStripe, tmp_path: Path, step: str) -> None:
    billing, client = crash_then_retry(ls, tmp_path, step)
    [gid] = stripe_customers(client, "c1")
    paid = [i["total"] for i in invoices(client, gid) if i["status"] == "paid"]
    intents = [
        collected(client, pi.id)[1]
        for pi in client.v1.payment_intents.list({"limit": 100}).data
        if as_dict(pi).get("customer") == gid
        and as_dict(pi).get("status") == "succeeded"
        and not as_dict(pi).get("invoice")  # an invoice's own payment is counted with it
    ]
    assert sum(paid) + sum(intents) == 2000, (paid, intents)
    billing.close()


def test_killed_before_the_stripe_call_is_rolled_back_without_charging(
    ls: LocalStripe, tmp_path: Path
) -> None:
    """The record is committed, Stripe never saw the charge: recover() must not charge it."""
    db = tmp_path / "crash.db"
    gw = gateway(ls.base)
    billing = Autumn(catalog(), store=SqliteStore(db), gateway=gw)
    billing.customers.create("c1", email="c1@example.com")
    billing.close()

    child = subprocess.run(
        [sys.executable, "-m", "tests.stripe.crash_child", str(db), ls.base, "before_charge"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -9, (child.returncode, child.stdout, child.stderr[-2000:])

    billing = Autumn(catalog(), store=SqliteStore(db), gateway=gw)
    client = gw.client
    [gid] = stripe_customers(client, "c1")  # created (and committed) before the record
    assert billing.recover() == 1  # settled: rolled back
    assert billing.recover() == 0
    customer = billing.customers.get("c1")
    assert not customer.has_product("pro")
    assert customer.gateway_customer_id == gid
    assert all_subscriptions(client, gid) == []
    assert invoices(client, gid) == []
    assert [
        pi.id
        for pi in client.v1.payment_intents.list({"limit": 100}).data
        if as_dict(pi).get("customer") == gid
    ] == []
    assert billing.invoices.list("c1") == []

    # The caller's retry is a new attach (the rolled-back one left no stored result): one charge.
    again = billing.attach("c1", "pro", idempotency_key="attach-1")
    assert not again.replayed
    live = [s for s in all_subscriptions(client, gid) if s["status"] == "active"]
    assert len(live) == 1
    assert [i["total"] for i in invoices(client, gid) if i["status"] == "paid"] == [2000]
    billing.close()
