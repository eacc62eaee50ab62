"""Real OS processes on one SQLite file, through the facade (issue 5's concurrency proofs).

Each child builds its own ``Autumn`` on its own ``SqliteStore`` over the same file, as separate
application processes would. Children are started with ``spawn``: nothing is inherited.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from autumn_core import Autumn
from autumn_sqlite import SqliteStore
from tests.stores import _process_workers as workers

pytestmark = pytest.mark.slow

PROCS = 4


def _run(target: Any, path: Path, *args: Any, per_process: list[Any] | None = None) -> list[Any]:
    """Run ``target(path, [per_process[i],] *args, barrier, queue)`` in PROCS spawned
    processes, started together at a barrier; return their reports."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCS)
    out = ctx.Queue()
    own = per_process or [None] * PROCS
    procs = [
        ctx.Process(
            target=target,
            args=(str(path), *([] if mine is None else [mine]), *args, start, out),
        )
        for mine in own
    ]
    for p in procs:
        p.start()
    reports = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return reports


def _event_count(path: Path, customer_id: str) -> int:
    store = SqliteStore(path)
    with store.transaction(write=False) as tx:
        pk = tx.customer_pk(customer_id)
        assert pk is not None
        n = len(
            tx.list_events(
                pk, feature_id=None, start=None, end=None, limit=1_000_000, starting_after=None
            )
        )
    store.close()
    return n


def test_four_processes_lose_no_track(tmp_path: Path) -> None:
    """Given one customer, when 4 processes each call track(1) 500 times on it at once, then
    usage is exactly 2000, there are 2000 events and no call failed (none gave up on the lock:
    how long calls waited is a benchmark figure, ``bench_group_commit.py``, not asserted here)."""
    # given
    path = tmp_path / "hot.db"
    with workers.engine(str(path)) as billing:
        billing.customers.create("hot")
    # when
    reports = _run(workers.track_many_times, path, "hot", 500)
    # then
    assert [errors for errors, _ in reports] == [[]] * PROCS
    with workers.engine(str(path)) as billing:
        assert billing.customers.get("hot").features["messages"].usage == Decimal(2000)
    assert _event_count(path, "hot") == 2000


def test_overdraw_race_accepts_exactly_the_balance(tmp_path: Path) -> None:
    """Given a balance of 100, when 4 processes each call track(1, overage="reject") 50 times
    at once, then exactly 100 succeed, 100 raise InsufficientBalance, and the balance is 0."""
    # given
    path = tmp_path / "overdraw.db"
    with workers.engine(str(path), 100) as billing:
        billing.customers.create("tight")
    # when
    reports = _run(workers.track_with_reject, path, "tight", 50)
    # then
    assert sum(accepted for accepted, _, _ in reports) == 100
    assert sum(rejected for _, rejected, _ in reports) == 100
    assert [others for _, _, others in reports] == [[]] * PROCS
    with workers.engine(str(path), 100) as billing:
        balance = billing.customers.get("tight").features["messages"]
    assert balance.remaining == 0
    assert balance.usage == 100
    assert all(r.balance == 0 for r in balance.breakdown)
    assert _event_count(path, "tight") == 100


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_tracks_keeps_exactly_the_returned_ones(tmp_path: Path) -> None:
    """Given a process streaming track(1) calls, when it is killed with SIGKILL, then the file
    passes integrity_check and holds the tracks that returned (plus at most the one that was
    committing as it died), with usage equal to the number of events."""
    # given
    path = tmp_path / "crash.db"
    with workers.engine(str(path)) as billing:
        billing.customers.create("crash")
    code = (
        "import sys; from tests.stores._process_workers import track_until_killed;"
        " track_until_killed(sys.argv[1], 'crash')"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    # when
    returned = 0
    deadline = time.monotonic() + 30
    while returned < 200 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        returned = int(line)
    os.kill(child.pid, signal.SIGKILL)
    for line in child.stdout:
        returned = int(line)
    child.wait()
    # then
    assert returned >= 200
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    events = _event_count(path, "crash")
    assert returned <= events <= returned + 1
    with workers.engine(str(path)) as billing:
        assert billing.customers.get("crash").features["messages"].usage == events


def test_trial_race_on_one_fingerprint_grants_one_trial(tmp_path: Path) -> None:
    """Given a product whose trial is unique per device fingerprint, when 4 processes at once
    create 4 different customers on one fingerprint and attach it, then exactly one gets the
    trial and the others get the product without one (T4)."""
    # given
    path = tmp_path / "trial.db"
    Autumn(workers.trial_catalog(), store=SqliteStore(path)).close()
    # when
    reports = _run(workers.attach_trial, path, per_process=[f"device-user-{i}" for i in range(4)])
    # then
    assert [error for _, _, error in reports] == [None] * PROCS
    trials = [customer_id for customer_id, trial_end, _ in reports if trial_end is not None]
    assert len(trials) == 1
    store = SqliteStore(path)
    with store.transaction(write=False) as tx:
        claimed = [
            cid
            for cid in (f"device-user-{i}" for i in range(4))
            if tx.trial_claimed("pro", tx.customer_pk(cid) or "", None, None)
        ]
    store.close()
    assert claimed == trials
