"""SqliteStore under contention and crashes: bounded lock waits, SIGKILL mid-stream."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autumn_core.errors import StoreError
from autumn_core.testing.contract.builders import customer, row
from autumn_sqlite import SqliteStore


def _locker(path: str | Path) -> sqlite3.Connection:
    """Another process's view: a plain connection holding the write lock."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


class TestLockWaits:
    def test_lock_held_past_the_bound_fails_cleanly(self, tmp_path: Path) -> None:
        """Given another connection holding the write lock for longer than lock_timeout
        (0.3 s), when the store writes, then after about 0.3 s it raises StoreError (never a
        raw sqlite3 error) and nothing was written."""
        # given
        store = SqliteStore(tmp_path / "l.db", lock_timeout=0.3)
        locker = _locker(store.path)
        # when
        started = time.monotonic()
        with pytest.raises(StoreError, match="write lock") as raised, store.transaction() as tx:
            tx.insert_customer(customer("blocked"))
        waited = time.monotonic() - started
        # then
        assert not isinstance(raised.value.__cause__, StoreError)
        assert 0.25 <= waited < 1.5
        locker.execute("ROLLBACK")
        locker.close()
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("blocked") is None
        with store.transaction() as tx:
            tx.insert_customer(customer("after"))
        store.close()

    def test_lock_released_within_the_bound_is_waited_for(self, tmp_path: Path) -> None:
        """Given another connection holding the write lock for 0.2 s, when the store writes
        with a 3 s bound, then the write waits and succeeds."""
        store = SqliteStore(tmp_path / "l.db", lock_timeout=3)
        locker = _locker(store.path)
        release = threading.Timer(0.2, lambda: locker.execute("COMMIT"))
        release.start()
        started = time.monotonic()
        with store.transaction() as tx:
            tx.insert_customer(customer("waited"))
        assert time.monotonic() - started >= 0.15
        release.join()
        locker.close()
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("waited") is not None
        store.close()

    def test_readers_are_not_blocked_by_a_writer(self, tmp_path: Path) -> None:
        """Given another connection with an uncommitted write holding the lock, when the store
        reads, then it answers at once with the committed state."""
        store = SqliteStore(tmp_path / "l.db", lock_timeout=0.3)
        with store.transaction() as tx:
            tx.insert_customer(customer("committed", pk="pk_c"))
        locker = _locker(store.path)
        locker.execute("UPDATE customers SET id = 'uncommitted' WHERE pk = 'pk_c'")
        started = time.monotonic()
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("committed") == "pk_c"
            assert tx.customer_pk("uncommitted") is None
        assert time.monotonic() - started < 0.2
        locker.execute("ROLLBACK")
        locker.close()
        store.close()

    def test_threads_queue_for_the_lock_without_errors(self, tmp_path: Path) -> None:
        """Given 8 threads and a short bound of 2 s, when each writes 30 times, then no call
        fails and every write is kept."""
        store = SqliteStore(tmp_path / "l.db", lock_timeout=2)
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(30):
                    with store.transaction() as tx:
                        tx.insert_customer(customer(f"t{n}-{i}"))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with store.transaction(write=False) as tx:
            assert len(tx.list_customers(limit=1000, starting_after=None, email=None)) == 240
        store.close()


CHILD = r"""
import sys
from datetime import UTC, datetime
from decimal import Decimal

import attrs

from autumn_core.changes import CustomerChange
from autumn_core.model import EventRecord
from autumn_sqlite import SqliteStore

store = SqliteStore(sys.argv[1])
pk = sys.argv[2]
now = datetime(2025, 1, 1, tzinfo=UTC)
i = 0
while True:
    with store.transaction() as tx:
        state = tx.load_customer(pk, for_update=True)
        r = state.rows[0]
        after = attrs.evolve(state, rows=(attrs.evolve(r, balance=r.balance - 1),))
        tx.save_customer(CustomerChange.between(state, after))
        e = EventRecord(f"e{i}", pk, None, "messages", None, Decimal(1), {}, now, now)
        tx.append_events([e])
    i += 1
    print(i, flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_stream_leaves_a_consistent_database(tmp_path: Path) -> None:
    """Given a child process committing a stream of writes (each: one row -1 and one event),
    when it is killed with SIGKILL, then the file opens, passes integrity_check, holds every
    write the child saw commit (at most one more, committed as it died), and each kept write is
    whole: the balance equals minus the number of events."""
    # given
    path = tmp_path / "crash.db"
    store = SqliteStore(path)
    with store.transaction() as tx:
        tx.insert_customer(customer("crash", pk="pk_crash", rows=(row("r", balance=0),)))
    store.close()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "pk_crash"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    # when
    reported = 0
    deadline = time.monotonic() + 20
    while reported < 300 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        reported = int(line)
    os.kill(child.pid, signal.SIGKILL)
    for line in child.stdout:  # lines written before the kill
        reported = int(line)
    child.wait()
    # then
    assert reported >= 300
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    store = SqliteStore(path)
    with store.transaction(write=False) as tx:
        state = tx.load_customer("pk_crash")
        events = tx.list_events(
            "pk_crash", feature_id=None, start=None, end=None, limit=100_000, starting_after=None
        )
    store.close()
    assert state is not None
    assert reported <= len(events) <= reported + 1
    assert state.rows[0].balance == -len(events)
