"""PostgresStore beyond the shared contract: migrations, round trips, error translation."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import pq
from psycopg_pool import ConnectionPool

import autumn_core
from autumn_core.app.unit import IDEMPOTENCY_TTL
from autumn_core.changes import CustomerChange
from autumn_core.errors import InvalidRequest, StoreError, UniqueViolation
from autumn_core.model import CustomerState, EventRecord, RowState
from autumn_postgres import PostgresStore, RetryableStoreError, schema, store_from_url
from autumn_postgres.store import translate
from tests.pg_cluster import PgCluster
from tests.postgres import _pg_workers as workers

pytestmark = pytest.mark.postgres

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def customer(pk: str, cid: str | None, *, balance: int = 10, rows: int = 3) -> CustomerState:
    return CustomerState(
        pk=pk,
        id=cid,
        created_at=T0,
        email=f"{pk}@example.com",
        rows=tuple(
            RowState(id=f"{pk}-r{i}", feature_id="m", created_at=T0, balance=Decimal(balance))
            for i in range(rows)
        ),
    )


@pytest.fixture
def store(pg_store_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_store_url)
    yield s
    s.close()


def migrations(url: str) -> list[tuple[int, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT version, applied_by_pid FROM {schema.MIGRATIONS_TABLE} ORDER BY version"
        ).fetchall()
    return [(int(v), int(pid)) for v, pid in rows]


# -- migrations -----------------------------------------------------------------------------


def test_fresh_database_is_migrated_to_the_current_version(pg_url: str) -> None:
    """Given an empty database, when a store opens it, then every step is applied once."""
    store = PostgresStore(pg_url)
    try:
        assert store.schema_version() == schema.current_version()
    finally:
        store.close()
    assert [v for v, _ in migrations(pg_url)] == list(range(1, schema.current_version() + 1))


def test_processes_opening_at_once_migrate_once(pg_url: str) -> None:
    """Given an empty database, when 6 processes open it at the same instant, then all of them
    succeed and each migration step was applied exactly once, by one backend."""
    ctx = multiprocessing.get_context("spawn")
    n = 6
    start = ctx.Barrier(n)
    out = ctx.Queue()
    procs = [ctx.Process(target=workers.open_store, args=(pg_url, start, out)) for _ in range(n)]
    for p in procs:
        p.start()
    reports = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert reports == [None] * n
    applied = migrations(pg_url)
    assert [v for v, _ in applied] == list(range(1, schema.current_version() + 1))
    assert len({pid for _, pid in applied}) == 1  # one process did all the steps


def test_a_new_step_is_applied_on_the_next_open(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a database at the current version, when the code gains a step, then reopening
    applies only that step and keeps the data."""
    first = PostgresStore(pg_url)
    with first.transaction() as tx:
        tx.insert_customer(customer("pk1", "c1"))
    first.close()
    steps = [*schema.MIGRATIONS, ("CREATE TABLE autumn_test_extra (x int)",)]
    monkeypatch.setattr(schema, "MIGRATIONS", steps)
    again = PostgresStore(pg_url)
    try:
        assert again.schema_version() == len(steps)
        with again.transaction(write=False) as tx:
            assert tx.customer_pk("c1") == "pk1"
    finally:
        again.close()
    assert [v for v, _ in migrations(pg_url)] == list(range(1, len(steps) + 1))


def test_a_head_is_written_with_lz4_and_read_back_exactly(pg_url: str) -> None:
    """Given a fresh database (schema 3), when a customer opens 60 locks (a head of ~20 KB, so
    TOASTed), then the head column compresses with lz4, the stored head is lz4-compressed, and
    a store that did not write it reads back the same open locks, held amounts and balance."""
    store = PostgresStore(pg_url)
    billing = autumn_core.Autumn(_metered_catalog(), store=store)
    try:
        billing.customers.create("busy")
        for i in range(60):
            assert billing.check(
                "busy", "messages", required_balance="0.5", lock={"lock_id": f"job-{i}"}
            ).allowed
        with psycopg.connect(pg_url, autocommit=True) as conn:
            method = conn.execute(
                "SELECT attcompression FROM pg_attribute"
                " WHERE attrelid = 'autumn_customers'::regclass AND attname = 'head'"
            ).fetchone()
            stored = conn.execute(
                "SELECT pg_column_compression(head), octet_length(head::text)"
                " FROM autumn_customers WHERE id = 'busy'"
            ).fetchone()
        assert method == ("l",)
        assert stored is not None and stored[0] == "lz4" and stored[1] > 10_000, stored
        other = autumn_core.Autumn(_metered_catalog(), store=PostgresStore(pg_url, cache_size=0))
        try:
            seen = other.customers.get("busy").features["messages"]
            assert (Decimal(seen.held), Decimal(seen.remaining)) == (
                Decimal(30),
                Decimal(10**9 - 30),
            )
            with other.store.transaction(write=False) as tx:
                pk = tx.customer_pk("busy")
                assert pk is not None
                loaded = tx.load_customer(pk)
            assert loaded is not None
            assert [lk.id for lk in loaded.control_state.locks] == [f"job-{i}" for i in range(60)]
        finally:
            other.close()
    finally:
        billing.close()


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    """Given a database migrated by a newer autumn_postgres, when this one opens it, then it
    refuses with a StoreError that says so, and changes nothing."""
    PostgresStore(pg_url).close()
    newer = schema.current_version() + 1
    with psycopg.connect(pg_url) as conn:
        conn.execute(f"INSERT INTO {schema.MIGRATIONS_TABLE} (version) VALUES (%s)", (newer,))
    with pytest.raises(StoreError, match="newer"):
        PostgresStore(pg_url)
    assert max(v for v, _ in migrations(pg_url)) == newer


# -- round trips ----------------------------------------------------------------------------


def _statements(cluster: PgCluster, dbname: str) -> int:
    """Statements executed in ``dbname`` since the last reset (pg_stat_statements)."""
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
            (dbname,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _reset_statements(cluster: PgCluster) -> None:
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def _count_round_trips(lines: list[str]) -> int:
    """Round trips in a libpq protocol trace: every run of frontend messages (``F``) that is
    followed by a backend message (``B``) is one wait for the server, whether it ended with a
    ``Sync``, a ``Flush`` or nothing (pipeline mode)."""
    trips = 0
    sent = False
    for line in lines:
        if line.startswith("F\t"):
            sent = True
        elif line.startswith("B\t") and sent:
            trips += 1
            sent = False
    return trips


@contextlib.contextmanager
def _round_trips(pool: ConnectionPool[Any], tmp_path: Path) -> Iterator[list[int]]:
    """Count the client's round trips on the pool's only connection from libpq's protocol
    trace (``_count_round_trips``). The count is appended to the yielded list when the block
    ends."""
    trace = tmp_path / "libpq.trace"
    counted: list[int] = []
    with pool.connection() as conn:
        pgconn = conn.pgconn
    with trace.open("w") as f:
        pgconn.trace(f.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield counted
        finally:
            pgconn.untrace()
    counted.append(_count_round_trips(trace.read_text().splitlines()))


def test_the_round_trip_counter_counts_waits_not_syncs() -> None:
    """A pipeline that flushes (no Sync) and then syncs is two round trips; one Sync whose
    answer is read is one; messages sent without waiting in between are one."""
    assert _count_round_trips(["F\t1\tBind", "F\t1\tFlush", "B\t1\tBindComplete"]) == 1
    pipelined = ["F\tBind", "F\tFlush", "B\tDataRow", "F\tBind", "F\tSync", "B\tReady"]
    assert _count_round_trips(pipelined) == 2
    assert _count_round_trips([*pipelined, "F\tSync", "B\tReady"]) == 3


def test_a_read_with_nothing_due_is_one_round_trip(
    pg_cluster: PgCluster, pg_store_url: str, tmp_path: Path
) -> None:
    """Given a stored customer, when a read transaction finds it by id and loads it (what a
    ``check`` does), then that is one statement on the server and one round trip on the wire
    (no BEGIN, no COMMIT, no second query), with a warm parse cache or none."""
    dbname = pg_store_url.rsplit("/", 1)[1]
    for cache_size in (10_000, 0):
        pool: ConnectionPool[Any] = ConnectionPool(
            pg_store_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True
        )
        store = PostgresStore(pool, cache_size=cache_size)
        try:
            with store.transaction() as tx:
                tx.insert_customer(customer(f"pk{cache_size}", f"c{cache_size}"))
            with store.transaction(write=False) as tx:  # warm: statements prepared
                tx.customer_pk(f"c{cache_size}")
            _reset_statements(pg_cluster)
            with _round_trips(pool, tmp_path) as trips:
                for _ in range(10):
                    with store.transaction(write=False) as tx:
                        pk = tx.customer_pk(f"c{cache_size}")
                        assert pk is not None
                        state = tx.load_customer(pk)
                        assert state is not None and len(state.rows) == 3
            assert trips == [10]
            assert _statements(pg_cluster, dbname) == 10
        finally:
            store.close()
            pool.close()


def _rename(store: PostgresStore, pk: str, name: str) -> None:
    with store.transaction() as tx:
        before = tx.load_customer(pk, for_update=True)
        assert before is not None
        tx.save_customer(CustomerChange.between(before, attrs.evolve(before, name=name)))
        tx.append_events([EventRecord(f"{pk}-{name}", pk, None, "m", None, Decimal(1), {}, T0, T0)])


@pytest.mark.parametrize("pipeline", [True, False])
def test_a_read_transaction_sees_one_snapshot(pg_store_url: str, pipeline: bool) -> None:
    """Given two customers, when a read transaction has read both and another connection then
    commits changes to both (and an event), then the transaction's later statements (customer
    rows through the wire, events through psycopg) do not see that commit; a new read does."""
    store = PostgresStore(pg_store_url, pipeline=pipeline)
    other = PostgresStore(pg_store_url, pipeline=pipeline)  # another pool, another connection
    try:
        with store.transaction() as tx:
            tx.insert_customer(customer("a", "a"))
            tx.insert_customer(customer("b", "b"))
        with store.transaction(write=False) as tx:
            a1 = tx.load_customer("a")
            b1 = tx.load_customer("b")  # the snapshot is taken here (the first read replayed)
            _rename(other, "a", "new")
            _rename(other, "b", "new")
            assert tx.load_customer("a") == a1
            assert tx.load_customer("b") == b1
            assert tx.customer_pk("a") == "a"
            kw: dict[str, Any] = dict(feature_id=None, start=None, end=None, limit=10)
            assert tx.list_events("a", starting_after=None, **kw) == []
            assert tx.load_customer("b") == b1
        assert a1 is not None and a1.name is None
        with store.transaction(write=False) as tx:
            a2 = tx.load_customer("a")
            assert a2 is not None and a2.name == "new"
            assert len(tx.list_events("a", starting_after=None, **kw)) == 1
    finally:
        store.close()
        other.close()


@pytest.mark.parametrize("pipeline", [True, False])
def test_a_commit_between_the_first_two_statements_of_a_read_is_never_mixed_in(
    pg_store_url: str, pipeline: bool
) -> None:
    """Given a read transaction whose first statement ran on its own (no BEGIN: a check is one
    round trip), when another connection changes what it read before the second statement,
    then the second statement raises RetryableStoreError instead of returning rows of a newer
    snapshot beside the old ones; through the engine's retry the call then succeeds."""
    store = PostgresStore(pg_store_url, pipeline=pipeline)
    other = PostgresStore(pg_store_url, pipeline=pipeline)
    try:
        with store.transaction() as tx:
            tx.insert_customer(customer("a", "a"))
            tx.insert_customer(customer("b", "b"))
        with pytest.raises(RetryableStoreError), store.transaction(write=False) as tx:
            assert tx.customer_pk("a") == "a"  # also reads customer a whole
            _rename(other, "a", "new")
            _rename(other, "b", "new")
            tx.load_customer("b")
        # Nothing was left open on the connection: the next read works and sees both changes.
        with store.transaction(write=False) as tx:
            a, b = tx.load_customer("a"), tx.load_customer("b")
            assert a is not None and b is not None and (a.name, b.name) == ("new", "new")
    finally:
        store.close()
        other.close()


def _metered_catalog() -> Any:
    from autumn_core import Catalog, Feature, Item, Product

    return Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product(
                "free",
                default=True,
                items=[Item.feature("messages", included=10**9, reset="month")],
            )
        ],
    )


def test_track_is_two_round_trips_and_check_one(
    pg_cluster: PgCluster, pg_store_url: str, tmp_path: Path
) -> None:
    """Given a customer with nothing due, when the engine tracks and checks through a store
    whose pool has one connection, then each track is at most two round trips (BEGIN with the
    load; the writes with COMMIT) and each check at most one, and the server ran four
    statements per track (the load, without a lock: a track is optimistic; the save, which
    verifies the version; the event; the transaction id read beside COMMIT for an ambiguous
    commit) and one per check; the usage is right."""
    dbname = pg_store_url.rsplit("/", 1)[1]
    for cache_size in (10_000, 0):
        pool: ConnectionPool[Any] = ConnectionPool(
            pg_store_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True
        )
        billing = autumn_core.Autumn(
            _metered_catalog(), store=PostgresStore(pool, cache_size=cache_size)
        )
        cid = f"u{cache_size}"
        try:
            billing.customers.create(cid)
            billing.track(cid, "messages")  # warm: statements prepared on the connection
            billing.check(cid, "messages")
            _reset_statements(pg_cluster)
            with _round_trips(pool, tmp_path) as tracks:
                for _ in range(10):
                    billing.track(cid, "messages")
            assert _statements(pg_cluster, dbname) == 10 * 4
            _reset_statements(pg_cluster)
            with _round_trips(pool, tmp_path) as checks:
                for _ in range(10):
                    assert billing.check(cid, "messages").allowed
            assert _statements(pg_cluster, dbname) == 10
            assert tracks[0] <= 10 * 2, tracks
            assert checks[0] <= 10 * 1, checks
            assert billing.customers.get(cid).features["messages"].usage == 11
        finally:
            billing.close()
            pool.close()


def test_a_track_shaped_write_is_five_statements(pg_cluster: PgCluster, pg_store_url: str) -> None:
    """Given a stored customer, when a write transaction finds, locks, saves one changed row and
    appends one event, then the server executed lock, load, save, insert and the transaction-id
    read sent beside COMMIT (BEGIN and COMMIT are not counted by pg_stat_statements), and the
    result is right."""
    dbname = pg_store_url.rsplit("/", 1)[1]
    store = PostgresStore(pg_store_url, max_size=1)
    try:
        with store.transaction() as tx:
            tx.insert_customer(customer("pk1", "c1"))

        def track(i: int) -> None:
            with store.transaction() as tx:
                pk = tx.customer_pk("c1")
                assert pk is not None
                before = tx.load_customer(pk, for_update=True)
                assert before is not None
                r = before.rows[1]
                after = attrs.evolve(
                    before,
                    rows=(before.rows[0], attrs.evolve(r, balance=r.balance - 1), before.rows[2]),
                )
                tx.save_customer(CustomerChange.between(before, after))
                tx.append_events(
                    [EventRecord(f"e{i}", pk, None, "m", None, Decimal(1), {}, T0, T0)]
                )

        track(0)
        _reset_statements(pg_cluster)
        for i in range(1, 11):
            track(i)
        assert _statements(pg_cluster, dbname) == 10 * 5
        with store.transaction(write=False) as tx:
            state = tx.load_customer("pk1")
            assert state is not None
            assert [r.balance for r in state.rows] == [10, -1, 10]
            assert state.version == 12
    finally:
        store.close()


def _track_like(tx: Any, pk: str, event_id: str) -> None:
    before = tx.load_customer(pk, for_update=True)
    assert before is not None
    r = before.rows[0]
    after = attrs.evolve(before, rows=(attrs.evolve(r, balance=r.balance - 1), *before.rows[1:]))
    tx.save_customer(CustomerChange.between(before, after))
    tx.append_events([EventRecord(event_id, pk, None, "m", None, Decimal(1), {}, T0, T0)])


def test_a_queued_write_that_fails_at_commit_keeps_nothing(store: PostgresStore) -> None:
    """Given an event id already stored, when a track-shaped transaction queues a save and an
    event with that id, then the COMMIT round trip raises UniqueViolation, the save is not kept,
    the cache is not touched, and the next transaction on the connection works."""
    with store.transaction() as tx:
        tx.insert_customer(customer("pk1", "c1"))
    with store.transaction() as tx:
        _track_like(tx, "pk1", "e1")
    with pytest.raises(UniqueViolation), store.transaction() as tx:
        _track_like(tx, "pk1", "e1")
    for _ in range(2):
        with store.transaction(write=False) as tx:
            state = tx.load_customer("pk1")
            assert state is not None and state.rows[0].balance == 9 and state.version == 2
    with store.transaction() as tx:
        _track_like(tx, "pk1", "e2")
    with store.transaction(write=False) as tx:
        state = tx.load_customer("pk1")
        assert state is not None and state.rows[0].balance == 8


def test_a_write_mixing_hot_and_other_statements_commits_them_all(store: PostgresStore) -> None:
    """Given a customer, when one transaction locks it (pipelined wire), then runs statements
    the wire does not send (an idempotency record, a claim), then saves and appends, then all
    of it is committed together."""
    from autumn_core.model import IdempotencyRecord

    with store.transaction() as tx:
        tx.insert_customer(customer("pk1", "c1"))
    with store.transaction() as tx:
        assert tx.customer_pk("c1") == "pk1"
        assert tx.claim_gateway_event("g1")
        tx.put_idempotency(
            IdempotencyRecord("track", "pk1", "k1", "h", {"ok": True}, T0),
            expired=T0 - IDEMPOTENCY_TTL,
        )
        _track_like(tx, "pk1", "e1")
    with store.transaction(write=False) as tx:
        state = tx.load_customer("pk1")
        assert state is not None and state.rows[0].balance == 9
        assert tx.get_idempotency("track", "pk1", "k1") is not None
        assert (
            len(
                tx.list_events(
                    "pk1", feature_id=None, start=None, end=None, limit=10, starting_after=None
                )
            )
            == 1
        )
    with store.transaction() as tx:
        assert not tx.claim_gateway_event("g1")


def test_a_reset_session_loses_prepared_statements_and_the_call_is_retryable(
    pg_store_url: str,
) -> None:
    """Given a pooled connection whose session someone resets (``DISCARD ALL`` drops the
    statements the store prepared on it), when the next transaction runs, then it fails with a
    retryable StoreError (nothing changed) and the rerun prepares again and succeeds; through
    the engine the retry is invisible."""
    pool: ConnectionPool[Any] = ConnectionPool(
        pg_store_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True
    )
    store = PostgresStore(pool)
    try:
        with store.transaction() as tx:
            tx.insert_customer(customer("pk1", "c1"))
        with store.transaction() as tx:
            _track_like(tx, "pk1", "e1")
        with pool.connection() as conn:
            conn.execute("DISCARD ALL")
        with pytest.raises(RetryableStoreError), store.transaction() as tx:
            _track_like(tx, "pk1", "e2")
        with store.transaction() as tx:
            _track_like(tx, "pk1", "e2")
        with store.transaction(write=False) as tx:
            state = tx.load_customer("pk1")
            assert state is not None and state.rows[0].balance == 8
    finally:
        store.close()
        pool.close()
    pool = ConnectionPool(
        pg_store_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True
    )
    billing = autumn_core.Autumn(_metered_catalog(), store=PostgresStore(pool))
    try:
        billing.customers.create("u1")
        billing.track("u1", "messages")
        with pool.connection() as conn:
            conn.execute("DISCARD ALL")
        billing.track("u1", "messages")
        with pool.connection() as conn:
            conn.execute("DISCARD ALL")
        assert billing.check("u1", "messages").allowed
        assert billing.customers.get("u1").features["messages"].usage == 2
    finally:
        billing.close()
        pool.close()


# -- error translation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected", "retryable"),
    [
        (psycopg.errors.SerializationFailure("could not serialize"), RetryableStoreError, True),
        (psycopg.errors.DeadlockDetected("deadlock detected"), RetryableStoreError, True),
        (psycopg.errors.UniqueViolation("duplicate key"), UniqueViolation, False),
        (psycopg.OperationalError("server closed the connection"), StoreError, False),
        (psycopg.errors.AdminShutdown("terminating connection"), StoreError, False),
        (psycopg.errors.UndefinedTable("no such table"), StoreError, False),
        (ValueError("bad document"), StoreError, False),
    ],
)
def test_translate_maps_driver_errors(
    exc: BaseException, expected: type[StoreError], retryable: bool
) -> None:
    """Every driver error becomes the core's error class, retryable only when the server rolled
    the transaction back (40001, 40P01)."""
    err = translate(exc)
    assert type(err) is expected
    assert getattr(err, "retryable", False) is retryable
    assert not isinstance(err, psycopg.Error)


def test_a_deadlock_is_a_retryable_store_error(store: PostgresStore) -> None:
    """Given two customers, when two write transactions lock them in opposite orders, then
    one of them fails with a retryable StoreError (nothing of it kept) and the other commits."""
    with store.transaction() as tx:
        tx.insert_customer(customer("a", "a"))
        tx.insert_customer(customer("b", "b"))
    both_locked_one = threading.Barrier(2)
    results: dict[str, BaseException | None] = {}

    def work(first: str, second: str) -> None:
        try:
            with store.transaction() as tx:
                s1 = tx.load_customer(first, for_update=True)
                assert s1 is not None
                tx.save_customer(CustomerChange.between(s1, attrs.evolve(s1, name=f"by {first}")))
                both_locked_one.wait(10)
                assert tx.load_customer(second, for_update=True) is not None
            results[first] = None
        except BaseException as exc:
            results[first] = exc

    threads = [threading.Thread(target=work, args=p) for p in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    failures = [e for e in results.values() if e is not None]
    assert len(failures) == 1, results
    assert isinstance(failures[0], RetryableStoreError)
    assert failures[0].retryable is True
    loser = next(k for k, e in results.items() if e is not None)
    with store.transaction(write=False) as tx:
        lost = tx.load_customer(loser)
        assert lost is not None and lost.name is None


def test_a_save_from_an_unlocked_stale_read_is_a_retryable_store_error(
    store: PostgresStore,
) -> None:
    """Given a write transaction that read a customer without locking it, when another
    transaction saves that customer first, then the first one's commit fails with a retryable
    StoreError and the other's change is kept."""
    with store.transaction() as tx:
        tx.insert_customer(customer("a", "a"))
    with pytest.raises(RetryableStoreError), store.transaction() as tx:
        stale = tx.load_customer("a")
        assert stale is not None
        other = PostgresStore(store._conninfo)  # another store object, another connection
        with other.transaction() as tx2:
            fresh = tx2.load_customer("a", for_update=True)
            assert fresh is not None
            tx2.save_customer(CustomerChange.between(fresh, attrs.evolve(fresh, name="winner")))
        tx.save_customer(CustomerChange.between(stale, attrs.evolve(stale, name="loser")))
    with store.transaction(write=False) as tx:
        got = tx.load_customer("a")
        assert got is not None and got.name == "winner"


def test_an_unreachable_server_is_a_store_error(pg_cluster: PgCluster) -> None:
    """Given nothing listening on a port, when a store opens it, then StoreError (not a
    psycopg exception) is raised within the timeout."""
    from tests.pg_cluster import _free_port

    url = f"postgresql://postgres@127.0.0.1:{_free_port()}/nope?connect_timeout=1"
    with pytest.raises(StoreError):
        PostgresStore(url, timeout=1.0)


def test_a_killed_connection_fails_one_call_and_the_store_recovers(
    pg_cluster: PgCluster, pg_store_url: str
) -> None:
    """Given a store whose pooled connection the server terminates, when the next call runs,
    then it fails with StoreError (not a psycopg error), and the call after it succeeds."""
    store = PostgresStore(pg_store_url, max_size=1)
    try:
        with store.transaction() as tx:
            tx.insert_customer(customer("a", "a"))
        with store.transaction(write=False) as tx:
            pid = tx._conn.info.backend_pid
        with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreError), store.transaction(write=False) as tx:
            tx.customer_pk("a")
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("a") == "a"
    finally:
        store.close()


def test_unique_violation_on_insert_keeps_the_transaction_usable(store: PostgresStore) -> None:
    """Given customer "a", when a transaction inserts another "a" (refused) and carries on,
    then its other work commits."""
    with store.transaction() as tx:
        tx.insert_customer(customer("pk1", "a"))
    with store.transaction() as tx:
        with pytest.raises(UniqueViolation):
            tx.insert_customer(customer("pk2", "a"))
        tx.insert_customer(customer("pk3", "b"))
    with store.transaction(write=False) as tx:
        assert tx.customer_pk("b") == "pk3"


# -- opening ----------------------------------------------------------------------------------


def test_open_by_url_through_the_entry_point(pg_store_url: str) -> None:
    """``autumn_core.open("postgresql://...")`` finds this store through the entry point."""
    from autumn_core import Catalog, Feature

    catalog = Catalog(features=[Feature.boolean("sso")], products=[])
    billing = autumn_core.open(pg_store_url, catalog=catalog)
    try:
        billing.customers.create("u1")
        assert billing.customers.get("u1").id == "u1"
    finally:
        billing.close()
    billing = autumn_core.open(
        pg_store_url.replace("postgresql://", "postgres://"), catalog=catalog
    )
    try:
        assert billing.customers.get("u1").id == "u1"
    finally:
        billing.close()


def test_store_from_url_refuses_unknown_options(pg_store_url: str) -> None:
    with pytest.raises(InvalidRequest, match="bogus"):
        store_from_url(pg_store_url, bogus=1)
    with pytest.raises(InvalidRequest):
        store_from_url("mysql://x")


def test_repr_hides_the_password(pg_store_url: str) -> None:
    url = pg_store_url.replace("postgres@", "postgres:secret@")
    store = PostgresStore(url)
    try:
        assert "secret" not in repr(store)
    finally:
        store.close()


@pytest.mark.parametrize("pipeline", [True, False])
def test_a_reload_after_another_process_saved_parses_only_the_changed_documents(
    pg_store_url: str, pipeline: bool
) -> None:
    """Given a customer parsed by one store, when another store (another process) changes one
    balance row, deletes one, reorders or renames, then the first store's next load equals a
    fresh parse, and the records whose documents did not change are the very objects it had."""
    store = PostgresStore(pg_store_url, pipeline=pipeline)
    other = PostgresStore(pg_store_url, pipeline=pipeline)
    fresh = PostgresStore(pg_store_url, pipeline=pipeline, cache_size=0)

    def load(s: PostgresStore) -> CustomerState:
        with s.transaction() as tx:
            state = tx.load_customer("h", for_update=True)
        assert state is not None
        return state

    def change(fn: Any) -> None:
        with other.transaction() as tx:
            before = tx.load_customer("h", for_update=True)
            assert before is not None
            tx.save_customer(CustomerChange.between(before, fn(before)))

    try:
        with other.transaction() as tx:
            tx.insert_customer(customer("h", "h", rows=4))
        a = load(store)  # parsed once: the cache now knows its documents
        r0, r1, r2, r3 = a.rows
        change(lambda s: attrs.evolve(s, rows=(attrs.evolve(r0, balance=Decimal(5)), r1, r2, r3)))
        b = load(store)
        assert b == load(fresh)
        assert b.rows[0].balance == 5 and b.rows[0] is not r0
        assert b.rows[1] is r1 and b.rows[2] is r2 and b.rows[3] is r3
        assert b.rows[1:] == a.rows[1:]
        # its own save keeps what it knows: a reload after another change still reuses
        with store.transaction() as tx:
            before = tx.load_customer("h", for_update=True)
            assert before is b  # the cache is current
            tx.save_customer(
                CustomerChange.between(before, attrs.evolve(before, rows=before.rows[:3]))
            )  # delete r3
        change(lambda s: attrs.evolve(s, rows=(s.rows[2], s.rows[1], s.rows[0]), name="renamed"))
        c = load(store)
        assert c == load(fresh)
        assert c.name == "renamed" and [r.id for r in c.rows] == ["h-r2", "h-r1", "h-r0"]
        assert c.rows[0] is r2 and c.rows[1] is r1  # reordered, same documents
        change(lambda s: attrs.evolve(s, rows=()))
        d = load(store)
        assert d == load(fresh) and d.rows == () and d.name == "renamed"
    finally:
        store.close()
        other.close()
        fresh.close()


def test_a_priced_attach_works_and_psycopg_prepares_nothing(pg_store_url: str) -> None:
    """Given a fresh database and a product with a price, when a new customer and an existing
    one attach it (the write mixes the hot statements with claims, invoices and pending
    records), then both attach, and the server session holds only the wire's prepared
    statements (psycopg prepares none, so nothing can deallocate or shadow them)."""
    from autumn_core import Price
    from autumn_memory import MemoryGateway

    cat = autumn_core.Catalog(
        features=[autumn_core.Feature.metered("messages")],
        products=[
            autumn_core.Product(
                "free", default=True, items=[autumn_core.Item.feature("messages", included=5)]
            ),
            autumn_core.Product(
                "pro", price=Price(20), items=[autumn_core.Item.feature("messages", included=50)]
            ),
        ],
    )
    store = PostgresStore(pg_store_url, max_size=1)
    for gateway in (MemoryGateway(), None):
        billing = autumn_core.Autumn(cat, store=store, gateway=gateway)
        new, old = f"new{gateway is None}", f"old{gateway is None}"
        billing.customers.create(old)
        for cid in (new, old):
            billing.attach(cid, "pro")
            assert [p.id for p in billing.customers.get(cid).products] == ["pro"]
            assert [i.total for i in billing.invoices.list(cid)] == [Decimal(20)]
    with store._connection() as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM pg_prepared_statements")]
    assert names and all(n.startswith("autumn_") for n in names), names
    store.close()


def test_a_save_moving_balances_alone_rewrites_only_their_field(
    store: PostgresStore, pg_store_url: str
) -> None:
    """Given a customer of three rows, when a save moves the balance of the second to 22.470
    alone (a track), then the server rewrote that field of its document (the exponent kept,
    the other fields as they were) and no other row; a store without cache reads the customer
    exactly; a later save that changes another field of that row too writes it whole."""
    # given
    s = customer("pk_bal", "bal")
    with store.transaction() as tx:
        tx.insert_customer(s)
    with store.transaction() as tx:
        before = tx.load_customer("pk_bal", for_update=True)
    assert before is not None
    after = _second_row_changed(before, balance=Decimal("22.470"))
    docs_before = _row_documents(pg_store_url, "pk_bal")
    # when
    with store.transaction() as tx:
        assert tx.load_customer("pk_bal", for_update=True) == before
        tx.save_customer(CustomerChange.between(before, after))
    # then
    docs = _row_documents(pg_store_url, "pk_bal")
    assert docs["pk_bal-r1"] == {**docs_before["pk_bal-r1"], "balance": "22.470"}
    assert {k: v for k, v in docs.items() if k != "pk_bal-r1"} == {
        k: v for k, v in docs_before.items() if k != "pk_bal-r1"
    }
    fresh = PostgresStore(pg_store_url, cache_size=0)
    with fresh.transaction(write=False) as tx:
        loaded = tx.load_customer("pk_bal")
    assert loaded is not None and loaded.rows == after.rows
    assert str(loaded.rows[1].balance) == "22.470"
    # a whole write after it
    with store.transaction() as tx:
        current = tx.load_customer("pk_bal", for_update=True)
        assert current is not None
        last = _second_row_changed(current, balance=Decimal("20"), granted=Decimal("99"))
        tx.save_customer(CustomerChange.between(current, last))
    with fresh.transaction(write=False) as tx:
        loaded = tx.load_customer("pk_bal")
    assert loaded is not None and loaded.rows == last.rows
    fresh.close()


def _row_documents(url: str, customer_pk: str) -> dict[str, Any]:
    """The stored document of each balance row of a customer, by row id."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id, data FROM autumn_balance_rows WHERE customer_pk = %s", (customer_pk,)
        )
        return dict(rows.fetchall())


def _second_row_changed(state: CustomerState, **changes: Any) -> CustomerState:
    """The customer with its second balance row changed (of three)."""
    first, second, third = state.rows
    return attrs.evolve(state, rows=(first, attrs.evolve(second, **changes), third))
