"""A process SIGKILLed between its commits and their webhook delivery (docs/rules.md EO2,
EO4): a fresh process delivers every committed event, and none of a change that rolled back.
Multi-process stores only (SQLite file, PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from autumn_core import ManualClock, open
from autumn_core.signing import verify
from autumn_memory import MemoryGateway
from tests.conftest import PgDatabases

from .conftest import T0, catalog
from .kill_child import SECRET
from .receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store_url(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if store_kind == "memory":
        pytest.skip("the store does not declare multi_process=True")
    if store_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'kill.db'}"
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    return databases.url(7)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_events_committed_before_a_kill_are_delivered_by_the_next_process(
    store_url: str, receiver: Receiver
) -> None:
    # given a child that commits ann's sign-up and upgrade, bob's sign-up and a declined
    # (rolled back) attach of bob, then starts sending to a receiver that never answers
    receiver.mode = "hang"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.outbox.kill_child", store_url, receiver.url, T0.isoformat()],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "committed", child.stderr and child.stderr.read()
        # when the child is killed while its first request is in flight
        assert receiver.got_request.wait(30)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    receiver.mode = "ok"
    # and a fresh process delivers, once the dead deliverer's lease has ended
    clock = ManualClock(T0 + timedelta(minutes=6))
    billing = open(store_url, catalog=catalog(), gateway=MemoryGateway(), clock=clock)
    try:
        billing.webhooks.add_endpoint(receiver.url, secret=SECRET, name="app", timeout=10)
        report = billing.webhooks.deliver()
        outbox = billing.webhooks.list()
    finally:
        billing.close()
    # then every committed event arrived, signed, and nothing of the rolled-back attach
    assert report.delivered == len(outbox) and [e.status for e in outbox] == ["delivered"] * 5
    got = [json.loads(r.body) for r in receiver.received]
    assert [g["id"] for g in got] == [e.id for e in outbox]
    kinds = [
        (g["type"], g["data"]["customer_id"], g["data"].get("scenario"), g["data"].get("reason"))
        for g in got
    ]
    assert kinds == [
        ("customer.products.updated", "ann", "new", None),
        ("invoice.paid", "ann", None, "attach"),
        ("customer.products.updated", "ann", "expired", None),
        ("customer.products.updated", "ann", "upgrade", None),
        ("customer.products.updated", "bob", "new", None),
    ]
    for r in receiver.received:
        verify(r.body, r.headers["Autumn-Signature"], SECRET, now=lambda: clock.now().timestamp())
