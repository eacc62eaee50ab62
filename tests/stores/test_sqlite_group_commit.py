"""Group commit on SQLite (``autumn_sqlite.group``): many threads of one process share commits,
each call returns only after its own commit, and a failed commit fails exactly its batch."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from autumn_core import Autumn, Catalog, Feature, Item, ManualClock, Product
from autumn_core.changes import CustomerChange
from autumn_core.errors import StoreError
from autumn_core.model import CustomerState, EventRecord
from autumn_core.testing.contract.builders import customer, row
from autumn_sqlite import SqliteStore

THREADS = 8
START = datetime(2025, 1, 1, tzinfo=UTC)


def engine(path: Path, *, group_commit: bool = True) -> Autumn:
    catalog = Catalog(
        features=[Feature.metered("messages")],
        products=[Product("free", default=True, items=[Item.feature("messages", included=10**6)])],
    )
    return Autumn(
        catalog,
        store=SqliteStore(path, synchronous="FULL", group_commit=group_commit),
        clock=ManualClock(START),
    )


def events_of(store: SqliteStore, customer_id: str) -> list[EventRecord]:
    with store.transaction(write=False) as tx:
        pk = tx.customer_pk(customer_id)
        assert pk is not None
        return tx.list_events(
            pk, feature_id=None, start=None, end=None, limit=1_000_000, starting_after=None
        )


def in_threads(n: int, work: list[object], call: object) -> list[object]:
    """Run ``call(item)`` for every item on ``n`` threads started together; results in order."""
    results: list[object] = [None] * len(work)
    start = threading.Barrier(n)

    def worker(k: int) -> None:
        start.wait()
        for i in range(k, len(work), n):
            try:
                results[i] = call(work[i])  # type: ignore[operator]
            except Exception as exc:  # the test inspects every outcome
                results[i] = exc

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_tracks_give_the_results_of_serial_ones(tmp_path: Path) -> None:
    """Given 8 customers and one shared hot customer, when 8 threads track at once (sharing
    commits), then every customer ends as serial tracking leaves it, each thread's own
    customer saw 1000-1, 1000-2, ... in order, and the hot customer's results are exactly the
    serial results in some order (no two calls saw the same balance)."""
    customers = [f"c{i}" for i in range(THREADS)]
    per = 40
    grouped, serial = (
        engine(tmp_path / "grouped.db"),
        engine(tmp_path / "serial.db", group_commit=False),
    )
    for b in (grouped, serial):
        for c in [*customers, "hot"]:
            b.customers.create(c)
    work = [c for _ in range(per) for c in customers] + ["hot"] * (per * 2)

    def call(c: object) -> Decimal:
        r = grouped.track(str(c), "messages")
        return r.balances["messages"].remaining

    got = in_threads(THREADS, work, call)
    expected = [serial.track(c, "messages").balances["messages"].remaining for c in work]

    assert not [r for r in got if isinstance(r, Exception)]
    for c in customers:
        mine = [r for w, r in zip(work, got, strict=True) if w == c]
        assert mine == [r for w, r in zip(work, expected, strict=True) if w == c]
    hot_got = sorted(r for w, r in zip(work, got, strict=True) if w == "hot")  # type: ignore[type-var]
    assert hot_got == sorted(r for w, r in zip(work, expected, strict=True) if w == "hot")
    for c in [*customers, "hot"]:
        g, s = grouped.customers.get(c), serial.customers.get(c)
        assert g.features["messages"].remaining == s.features["messages"].remaining
        assert len(events_of(grouped.store, c)) == len(events_of(serial.store, c))  # type: ignore[arg-type]
    grouped.close()
    serial.close()


def test_writers_that_queue_share_one_commit(tmp_path: Path) -> None:
    """Given a writer holding the turn until two more are queued, when it finishes, then the
    two run in its transaction, each in a savepoint: one BEGIN and one COMMIT for the three."""
    store = SqliteStore(tmp_path / "g.db", synchronous="FULL")
    group = store._group
    assert group is not None
    statements: list[str] = []
    group.connection.set_trace_callback(statements.append)
    entered = threading.Event()

    def first() -> None:
        with store.transaction(write=True) as tx:
            tx.append_events([_event("e1")])
            entered.set()
            while group.waiting < 2:
                time.sleep(0.001)

    def later(name: str) -> None:
        entered.wait()
        with store.transaction(write=True) as tx:
            tx.append_events([_event(name)])

    threads = [threading.Thread(target=first)] + [
        threading.Thread(target=later, args=(n,)) for n in ("e2", "e3")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    words = Counter(s.split()[0].upper() for s in statements)
    assert (words["BEGIN"], words["SAVEPOINT"], words["RELEASE"], words["COMMIT"]) == (1, 2, 2, 1)
    assert _stored_event_ids(tmp_path / "g.db") == {"evt_e1", "evt_e2", "evt_e3"}
    store.close()


def _add_poison_table(path: Path) -> None:
    """A table whose rows break a deferred foreign key: inserting one makes COMMIT fail."""
    raw = sqlite3.connect(path)
    raw.executescript(
        """
        CREATE TABLE test_parent (id TEXT PRIMARY KEY);
        CREATE TABLE test_poison (
            parent TEXT REFERENCES test_parent (id) DEFERRABLE INITIALLY DEFERRED
        );
        """
    )
    raw.close()


def test_a_failed_commit_fails_exactly_the_writers_of_its_batch(tmp_path: Path) -> None:
    """Given a writer whose work makes COMMIT fail (a deferred foreign key it leaves broken),
    holding the turn until two more writers are queued, and a fourth writer that starts after,
    when they run, then the three of the batch fail with StoreError and none of their writes
    exists, and the fourth commits."""
    path = tmp_path / "f.db"
    store = SqliteStore(path, synchronous="FULL")
    group = store._group
    assert group is not None
    _add_poison_table(path)
    entered = threading.Event()
    outcome: dict[str, object] = {}

    def poison() -> None:
        try:
            with store.transaction(write=True) as tx:
                tx.append_events([_event("p")])
                tx._exec("INSERT INTO test_poison VALUES ('missing')")  # checked at COMMIT
                entered.set()
                while group.waiting < 2:
                    time.sleep(0.001)
            outcome["p"] = "committed"
        except StoreError as exc:
            outcome["p"] = exc

    def writer(name: str, after: threading.Event) -> None:
        after.wait()
        try:
            with store.transaction(write=True) as tx:
                tx.append_events([_event(name)])
            outcome[name] = "committed"
        except StoreError as exc:
            outcome[name] = exc

    batch = [threading.Thread(target=poison)] + [
        threading.Thread(target=writer, args=(n, entered)) for n in ("b", "c")
    ]
    for t in batch:
        t.start()
    for t in batch:
        t.join()
    writer("d", entered)

    assert [k for k in "pbc" if isinstance(outcome[k], StoreError)] == ["p", "b", "c"]
    assert outcome["d"] == "committed"
    assert "FOREIGN KEY" in str(outcome["b"])
    assert _stored_event_ids(path) == {"evt_d"}
    store.close()


def test_a_failed_batch_leaves_nothing_it_read_in_the_cache(tmp_path: Path) -> None:
    """Given a customer at balance 5, a first writer that saves it at 7 with an event and
    leaves COMMIT to fail, and a second writer of the same batch that reads the customer
    (seeing the first's uncommitted 7), when the batch fails and another process then saves
    the customer at 6 with an event (the same version the failed save would have given it),
    then this store reads 6: nothing read inside the failed batch was cached."""
    path = tmp_path / "c.db"
    store = SqliteStore(path, synchronous="FULL")
    group = store._group
    assert group is not None
    _add_poison_table(path)
    start = customer("cus_c", rows=(row("r1", balance=5),))
    with store.transaction() as tx:
        tx.insert_customer(start)
    with store.transaction(write=False) as tx:
        stored = tx.load_customer(start.pk)
    assert stored is not None

    def at(state: CustomerState, balance: int) -> CustomerState:
        return attrs.evolve(state, rows=(attrs.evolve(state.rows[0], balance=Decimal(balance)),))

    entered = threading.Event()
    outcome: dict[str, object] = {}

    def poison() -> None:
        try:
            with store.transaction(write=True) as tx:
                tx.save_customer(CustomerChange.between(stored, at(stored, 7)))
                tx.append_events([_event("p", start.pk)])
                tx._exec("INSERT INTO test_poison VALUES ('missing')")  # checked at COMMIT
                entered.set()
                while group.waiting < 1:
                    time.sleep(0.001)
        except StoreError as exc:
            outcome["p"] = exc

    def reader() -> None:
        entered.wait()
        try:
            with store.transaction(write=True) as tx:
                seen = tx.load_customer(start.pk)
                assert seen is not None
                outcome["seen"] = seen.rows[0].balance
        except StoreError as exc:
            outcome["r"] = exc

    threads = [threading.Thread(target=poison), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(outcome["p"], StoreError) and isinstance(outcome["r"], StoreError)
    assert outcome["seen"] == Decimal(7)
    # when
    other = SqliteStore(path)
    with other.transaction() as tx:
        before = tx.load_customer(start.pk)
        assert before is not None and before.rows[0].balance == Decimal(5)
        tx.save_customer(CustomerChange.between(before, at(before, 6)))
        tx.append_events([_event("o", start.pk)])
    other.close()
    # then
    with store.transaction(write=False) as tx:
        now = tx.load_customer(start.pk)
    assert now is not None and now.rows[0].balance == Decimal(6)
    store.close()


def test_a_writer_whose_work_fails_leaves_nothing_and_its_batch_commits(tmp_path: Path) -> None:
    """Given a writer holding the turn until two more are queued, the second of which writes
    and then fails, when they run, then the second's exception reaches it, its write is gone,
    and the first and third commit."""
    path = tmp_path / "s.db"
    store = SqliteStore(path, synchronous="FULL")
    group = store._group
    assert group is not None
    entered = threading.Event()
    outcome: dict[str, object] = {}

    def first() -> None:
        with store.transaction(write=True) as tx:
            tx.append_events([_event("a")])
            entered.set()
            while group.waiting < 2:
                time.sleep(0.001)
        outcome["a"] = "committed"

    def failing() -> None:
        entered.wait()
        try:
            with store.transaction(write=True) as tx:
                tx.append_events([_event("b")])
                raise ValueError("the work of b failed")
        except ValueError as exc:
            outcome["b"] = exc

    def third() -> None:
        entered.wait()
        while group.waiting < 1:
            time.sleep(0.001)
        with store.transaction(write=True) as tx:
            tx.append_events([_event("c")])
        outcome["c"] = "committed"

    threads = [threading.Thread(target=f) for f in (first, failing, third)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert isinstance(outcome["b"], ValueError)
    assert (outcome["a"], outcome["c"]) == ("committed", "committed")
    assert _stored_event_ids(path) == {"evt_a", "evt_c"}
    store.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_keeps_every_track_that_returned(tmp_path: Path) -> None:
    """Given a process whose 8 threads track 8 customers (sharing commits, synchronous=FULL),
    reporting each track once it returned, when it is killed with SIGKILL, then every reported
    track is in the file, and each customer's usage equals its events (at most its one
    unreported in-flight track more than reported)."""
    path = tmp_path / "kill.db"
    customers = [f"k{i}" for i in range(THREADS)]
    with engine(path) as billing:
        for c in customers:
            billing.customers.create(c)
    code = (
        "import sys; from tests.stores.test_sqlite_group_commit import track_until_killed;"
        " track_until_killed(sys.argv[1], sys.argv[2:])"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path), *customers], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    returned: Counter[str] = Counter()
    deadline = time.monotonic() + 60
    while sum(returned.values()) < 400 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        returned[line.strip()] += 1
    os.kill(child.pid, signal.SIGKILL)
    for line in child.stdout:
        if line.endswith("\n"):
            returned[line.strip()] += 1
    child.wait()

    assert sum(returned.values()) >= 400
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with engine(path) as billing:
        for c in customers:
            events = len(events_of(billing.store, c))  # type: ignore[arg-type]
            assert returned[c] <= events <= returned[c] + 1
            assert billing.customers.get(c).features["messages"].usage == events


def track_until_killed(path: str, customers: list[str]) -> None:
    """Child process: one thread per customer, tracking forever; a line per returned track."""
    billing = engine(Path(path))
    out = threading.Lock()

    def loop(c: str) -> None:
        while True:
            billing.track(c, "messages")
            with out:
                sys.stdout.write(c + "\n")
                sys.stdout.flush()

    threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in customers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _event(name: str, customer_pk: str = "no_customer") -> EventRecord:
    return EventRecord(
        f"evt_{name}", customer_pk, None, "messages", None, Decimal(1), {}, START, START
    )


def _stored_event_ids(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM events")}
    finally:
        conn.close()
