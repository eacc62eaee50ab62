"""SIGKILL at each step of an auto top-up's Stripe charge (docs/rules.md TU2), then a fresh
process's ``recover()`` and ``process_due()``: Stripe collected the top-up exactly once and the
credits were granted once. The crash points of test_crash.py (a top-up's customer already
exists at Stripe, so there is no "after_customer" step)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from autumn_core import Autumn, ManualClock
from autumn_sqlite import SqliteStore
from tests.outbox.test_topups import TOPUP, topup_catalog

from .conftest import LocalStripe
from .crash_child import gateway
from .helpers import as_dict, invoices

pytestmark = [pytest.mark.stripe, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["before_charge", "after_charge", "before_commit"]


def collected_cents(client: object, gid: str) -> int:
    """Everything Stripe collected from the customer: paid invoices and lone PaymentIntents."""
    paid = [i["total"] for i in invoices(client, gid) if i["status"] == "paid"]  # type: ignore[arg-type]
    intents = [
        as_dict(pi)["amount"]
        for pi in client.v1.payment_intents.list({"limit": 100}).data  # type: ignore[attr-defined]
        if as_dict(pi).get("customer") == gid
        and as_dict(pi).get("status") == "succeeded"
        and not as_dict(pi).get("invoice")
    ]
    return int(sum(paid) + sum(intents))


@pytest.mark.parametrize("step", STEPS)
def test_a_top_up_killed_at_each_step_is_collected_once(
    ls: LocalStripe, tmp_path: Path, step: str
) -> None:
    # given c1 on "standard" ($50 paid) with a top-up of 1,000 credits ($10) below 500
    db = tmp_path / "topup.db"
    gw = gateway(ls.base)
    start = datetime.now(UTC).replace(microsecond=0)
    clock = ManualClock(start)
    billing = Autumn(topup_catalog(), store=SqliteStore(db), gateway=gw, clock=clock)
    billing.customers.create(
        "c1", email="c1@example.com", billing_controls={"auto_topups": [TOPUP]}
    )
    billing.attach("c1", "standard")
    gid = billing.customers.get("c1").gateway_customer_id
    assert gid is not None and collected_cents(gw.client, gid) == 5000
    billing.close()
    # when a child's usage crosses the threshold and it dies at `step` of the top-up
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.stripe.topup_crash_child",
            str(db),
            ls.base,
            step,
            start.isoformat(),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -9, (child.returncode, child.stdout, child.stderr[-2000:])
    # and a fresh process recovers, then runs process_due after the dead runner's lease
    clock.set(start + timedelta(minutes=11))
    billing = Autumn(topup_catalog(), store=SqliteStore(db), gateway=gw, clock=clock)
    billing.recover()
    billing.process_due()
    assert billing.recover() == 0
    # then Stripe collected the top-up once, and the credits were granted once
    assert collected_cents(gw.client, gid) == 5000 + 1000
    assert billing.customers.get("c1").features["credits"].remaining == Decimal(1400)
    topups = [i for i in billing.invoices.list("c1") if i.lines[0].description.startswith("Auto")]
    assert [(i.total, i.status) for i in topups] == [(Decimal("10.00"), "paid")]
    events = [e.event.type for e in billing.webhooks.list() if "auto_topup" in e.event.type]
    assert events == ["billing.auto_topup_succeeded"]
    billing.close()
