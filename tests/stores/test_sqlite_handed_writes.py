"""Handed-over writes on SQLite (``SqliteStore.run_write``, ``GroupCommit.run``): a write queued
while another thread holds the turn is run by that thread, in its batch, in the owner's
context; the owner sleeps once and gets its own result or exception, only after the batch is
committed and, with ``synchronous="FULL"``, its WAL synced."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pytest

from autumn_core.errors import StoreError
from autumn_core.ports import StoreTransaction
from autumn_sqlite import SqliteStore
from autumn_sqlite.group import GroupCommit
from tests.stores.test_sqlite_group_commit import _add_poison_table, _event, _stored_event_ids

#: Set by each owner thread to its own name: a handed-over write must see its owner's value.
OWNER: ContextVar[str] = ContextVar("owner", default="nobody")


def group_of(store: SqliteStore) -> GroupCommit:
    group = store._group
    assert group is not None
    return group


def wait_until(test: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not test():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def holding_the_turn(
    store: SqliteStore, until: Callable[[], bool], *, extra: Callable[[Any], None] | None = None
) -> tuple[threading.Thread, threading.Event, dict[str, object]]:
    """A thread that writes event ``h`` (and ``extra``) and keeps its transaction open, holding
    the turn, until ``until()``; its outcome lands in the returned dict under ``holder``."""
    entered = threading.Event()
    outcome: dict[str, object] = {}

    def hold() -> None:
        try:
            with store.transaction(write=True) as tx:
                tx.append_events([_event("h")])
                if extra is not None:
                    extra(tx)
                entered.set()
                wait_until(until)
            outcome["holder"] = "committed"
        except BaseException as exc:  # the test inspects every outcome
            outcome["holder"] = exc

    thread = threading.Thread(target=hold)
    thread.start()
    entered.wait()
    return thread, entered, outcome


def handed(
    store: SqliteStore, names: list[str], work: Callable[[str, StoreTransaction], object]
) -> tuple[list[threading.Thread], dict[str, object]]:
    """One owner thread per name, each calling ``run_write`` with ``work`` under its name."""
    outcome: dict[str, object] = {}

    def owner(name: str) -> None:
        OWNER.set(name)
        try:
            outcome[name] = store.run_write(lambda tx: work(name, tx))
        except BaseException as exc:  # the test inspects every outcome
            outcome[name] = exc

    threads = [threading.Thread(target=owner, args=(n,)) for n in names]
    for t in threads:
        t.start()
    return threads, outcome


def join(*threads: threading.Thread) -> None:
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "h.db", synchronous="FULL")
    yield s
    s.close()


def test_queued_writes_run_in_the_batch_of_the_holder_of_the_turn(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Given a writer holding the turn until three handed-over writes are queued, when it
    finishes, then the three run on its thread, in its transaction (one BEGIN, one COMMIT),
    each in its own savepoint and in its owner's context, and each owner gets its own
    result."""
    group = group_of(store)
    statements: list[str] = []
    group.connection.set_trace_callback(statements.append)
    holder, _, held = holding_the_turn(store, lambda: group.queued == 3)
    holder_thread = holder.ident

    def work(name: str, tx: StoreTransaction) -> object:
        tx.append_events([_event(name)])
        return (OWNER.get(), threading.get_ident())

    # when
    owners, outcome = handed(store, ["a", "b", "c"], work)
    join(holder, *owners)
    # then
    assert held["holder"] == "committed"
    assert outcome == {n: (n, holder_thread) for n in "abc"}
    words = Counter(s.split()[0].upper() for s in statements)
    assert (words["BEGIN"], words["SAVEPOINT"], words["RELEASE"], words["COMMIT"]) == (1, 3, 3, 1)
    assert _stored_event_ids(tmp_path / "h.db") == {"evt_h", "evt_a", "evt_b", "evt_c"}


def test_a_handed_write_that_fails_raises_in_its_owner_and_the_rest_commit(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Given a writer holding the turn until three handed-over writes are queued, the second
    of which writes and then fails, when they run, then that owner gets its own exception,
    its write is gone, and the others commit."""
    group = group_of(store)
    holder, _, held = holding_the_turn(store, lambda: group.queued == 3)

    def work(name: str, tx: StoreTransaction) -> object:
        tx.append_events([_event(name)])
        if name == "b":
            raise ValueError("the work of b failed")
        return name

    # when
    owners, outcome = handed(store, ["a", "b", "c"], work)
    join(holder, *owners)
    # then
    assert held["holder"] == "committed"
    assert (outcome["a"], outcome["c"]) == ("a", "c")
    assert isinstance(outcome["b"], ValueError) and str(outcome["b"]) == "the work of b failed"
    assert _stored_event_ids(tmp_path / "h.db") == {"evt_h", "evt_a", "evt_c"}


def test_a_failed_commit_fails_every_handed_write_of_its_batch(tmp_path: Path) -> None:
    """Given a holder whose work makes COMMIT fail (a deferred foreign key it leaves broken)
    and two handed-over writes queued behind it, when the batch commits, then both owners get
    the StoreError and none of the three writes exists; a later write commits."""
    path = tmp_path / "p.db"
    store = SqliteStore(path, synchronous="FULL")
    group = group_of(store)
    _add_poison_table(path)

    def poison(tx: Any) -> None:
        tx._exec("INSERT INTO test_poison VALUES ('missing')")  # checked at COMMIT

    holder, _, held = holding_the_turn(store, lambda: group.queued == 2, extra=poison)

    def work(name: str, tx: StoreTransaction) -> object:
        tx.append_events([_event(name)])
        return name

    # when
    owners, outcome = handed(store, ["a", "b"], work)
    join(holder, *owners)
    # then
    assert isinstance(held["holder"], StoreError)
    assert isinstance(outcome["a"], StoreError) and "FOREIGN KEY" in str(outcome["a"])
    assert isinstance(outcome["b"], StoreError)
    assert _stored_event_ids(path) == set()
    assert store.run_write(lambda tx: work("d", tx)) == "d"
    assert _stored_event_ids(path) == {"evt_d"}
    store.close()


def test_an_interrupt_in_a_handed_write_stays_with_the_thread_it_hit(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Given a holder of the turn and a handed-over write that is interrupted while the holder
    runs it (a KeyboardInterrupt, which only the main thread gets and which belongs to it),
    when the holder finishes, then the holder's thread gets the KeyboardInterrupt, the owner
    gets a StoreError saying nothing was changed, and the holder's own write commits."""
    group = group_of(store)
    holder, _, held = holding_the_turn(store, lambda: group.queued == 1)

    def work(name: str, tx: StoreTransaction) -> object:
        tx.append_events([_event(name)])
        raise KeyboardInterrupt

    # when
    owners, outcome = handed(store, ["a"], work)
    join(holder, *owners)
    # then
    assert isinstance(held["holder"], KeyboardInterrupt)
    assert isinstance(outcome["a"], StoreError) and "nothing was changed" in str(outcome["a"])
    assert _stored_event_ids(tmp_path / "h.db") == {"evt_h"}


def test_a_write_inside_a_handed_write_is_refused(store: SqliteStore) -> None:
    """Given a handed-over write, when its work opens another write, then that raises
    StoreError (it would wait for the turn its own thread holds), and nothing is written."""

    def nested(tx: StoreTransaction) -> object:
        tx.append_events([_event("outer")])
        return store.run_write(lambda inner: inner.append_events([_event("inner")]))

    with pytest.raises(StoreError, match="already open"):
        store.run_write(nested)
    assert _stored_event_ids(Path(store.path)) == set()


def _blocking_sync(
    monkeypatch: pytest.MonkeyPatch, wal: Path
) -> tuple[threading.Event, threading.Event, list[int]]:
    """``os.fdatasync`` of the WAL file waits for ``release``; ``entered`` is set meanwhile.
    The returned list collects the inode of every file synced."""
    entered, release = threading.Event(), threading.Event()
    synced: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        if os.fstat(fd).st_ino == os.stat(wal).st_ino:
            entered.set()
            release.wait(timeout=30)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return entered, release, synced


def test_a_full_store_returns_a_write_only_once_the_wal_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a FULL store whose writer commits without a sync and syncs the WAL after passing
    the turn on, when a write commits and its sync is held, then the write is committed (a
    reader sees it) but its owner has not returned; once the sync ends it returns, and the
    file synced is the database's WAL."""
    path = tmp_path / "s.db"
    store = SqliteStore(path, synchronous="FULL")
    store.run_write(lambda tx: tx.append_events([_event("first")]))  # the WAL exists now
    entered, release, synced = _blocking_sync(monkeypatch, Path(f"{path}-wal"))
    returned = threading.Event()

    def write() -> None:
        store.run_write(lambda tx: tx.append_events([_event("second")]))
        returned.set()

    owner = threading.Thread(target=write)
    owner.start()
    # when
    assert entered.wait(timeout=10)
    # then
    assert _stored_event_ids(path) == {"evt_first", "evt_second"}
    assert not returned.wait(timeout=0.2)
    release.set()
    join(owner)
    assert returned.is_set()
    assert synced[-1] == os.stat(f"{path}-wal").st_ino
    store.close()


def test_a_normal_store_does_not_sync_the_wal_at_each_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a NORMAL store, when it writes, then nothing is synced by the store (SQLite's
    NORMAL: the WAL is synced at checkpoints only)."""
    path = tmp_path / "n.db"
    store = SqliteStore(path, synchronous="NORMAL")
    _, release, synced = _blocking_sync(monkeypatch, Path(f"{path}-wal"))
    release.set()
    for name in ("a", "b", "c"):
        store.run_write(lambda tx, name=name: tx.append_events([_event(name)]))
    assert synced == []
    store.close()


def test_a_failed_sync_fails_its_batch_and_every_later_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a FULL store whose disk fails to sync the WAL, when a write commits, then it
    raises StoreError naming the failed sync, and so does every later write, which changes
    nothing (a store that lost a sync cannot promise durability again until reopened)."""
    path = tmp_path / "e.db"
    store = SqliteStore(path, synchronous="FULL")
    store.run_write(lambda tx: tx.append_events([_event("first")]))

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    # when / then
    with pytest.raises(StoreError, match="failed to sync"):
        store.run_write(lambda tx: tx.append_events([_event("lost")]))
    monkeypatch.undo()
    with pytest.raises(StoreError, match="failed to sync"):
        store.run_write(lambda tx: tx.append_events([_event("later")]))
    with pytest.raises(StoreError, match="failed to sync"), store.transaction(write=True) as tx:
        tx.append_events([_event("later")])
    assert "evt_later" not in _stored_event_ids(path)
    store.close()
    reopened = SqliteStore(path, synchronous="FULL")
    reopened.run_write(lambda tx: tx.append_events([_event("after")]))
    assert "evt_after" in _stored_event_ids(path)
    reopened.close()


def test_a_store_without_group_commit_runs_a_handed_write_on_the_calling_thread(
    tmp_path: Path,
) -> None:
    """Given a store without group commit, when a write is handed over, then it runs on the
    calling thread in a transaction of its own, and commits."""
    store = SqliteStore(tmp_path / "o.db", synchronous="FULL", group_commit=False)
    got = store.run_write(lambda tx: (tx.append_events([_event("x")]), threading.get_ident())[1])
    assert got == threading.get_ident()
    assert _stored_event_ids(tmp_path / "o.db") == {"evt_x"}
    store.close()


def test_handed_writes_of_many_threads_give_each_owner_its_own_events(tmp_path: Path) -> None:
    """Given 8 threads each handing over 50 writes of its own events, mixed with 2 threads
    writing through ``transaction`` (the turn-taking path), when they run at once, then every
    call returned its own name and every event is stored exactly once."""
    path = tmp_path / "m.db"
    store = SqliteStore(path, synchronous="FULL")
    names: list[str] = []
    errors: list[BaseException] = []
    names_lock = threading.Lock()
    start = threading.Barrier(10)

    def handing(k: int) -> None:
        OWNER.set(f"t{k}")
        start.wait()
        for i in range(50):
            name = f"t{k}-{i}"
            try:
                got = store.run_write(
                    lambda tx, name=name: (tx.append_events([_event(name)]), OWNER.get())[1]
                )
                assert got == f"t{k}"
                with names_lock:
                    names.append(name)
            except BaseException as exc:  # the test inspects every outcome
                errors.append(exc)

    def taking(k: int) -> None:
        start.wait()
        for i in range(50):
            name = f"w{k}-{i}"
            with store.transaction(write=True) as tx:
                tx.append_events([_event(name)])
            with names_lock:
                names.append(name)

    threads = [threading.Thread(target=handing, args=(k,)) for k in range(8)] + [
        threading.Thread(target=taking, args=(k,)) for k in range(2)
    ]
    for t in threads:
        t.start()
    join(*threads)
    assert errors == []
    assert len(names) == 500
    assert _stored_event_ids(path) == {f"evt_{n}" for n in names}
    conn = sqlite3.connect(path)
    (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
    conn.close()
    assert count == 500
    store.close()
