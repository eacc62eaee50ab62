"""Faults with real processes and servers: a backend killed mid-transaction, the server
restarted under load, sessions reset between transactions (a real pgbouncer in transaction
mode), an unreachable or silent server, a commit whose answer is lost, a row lock held by
another session, a stopped backend, and connections handed back to the pool.

After each fault: every call either returned, or raised a typed error, within a bound (no
hang); successful returns = usage = events (nothing lost, nothing doubled).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from autumn_core import Autumn, Catalog, Feature, Item, Price, Product
from autumn_core.changes import CustomerChange
from autumn_core.errors import (
    AutumnError,
    CommitOutcomeUnknown,
    IdempotencyConflict,
    StoreError,
    StoreTimeout,
)
from autumn_postgres import PostgresStore
from autumn_postgres.pool import Pool
from tests.pg_cluster import PgCluster
from tests.postgres._faults import CuttingProxy, PgBouncer, SilentListener


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product(
                "free",
                default=True,
                items=[Item.feature("messages", included=10**9, reset="month")],
            ),
            Product("pro", price=Price(20), items=[Item.feature("messages", included=10**9)]),
        ],
    )


def usage(billing: Autumn, cid: str) -> Decimal:
    return billing.customers.get(cid).features["messages"].usage


def events(billing: Autumn, cid: str) -> int:
    """How many events the customer has (paged, 1000 at a time)."""
    count, after = 0, None
    while page := billing.events.list(cid, limit=1000, starting_after=after):
        count += len(page)
        after = page[-1].id
    return count


def backends(url: str, dbname: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'",
            (dbname,),
        ).fetchall()
    return [int(r[0]) for r in rows]


class Load:
    """``threads`` callers tracking 1 on one customer each in a loop until stopped; counts
    what each caller saw."""

    def __init__(self, billing: Autumn, cids: list[str]) -> None:
        self.billing = billing
        self.ok = {c: 0 for c in cids}
        self.unknown = {c: 0 for c in cids}
        self.errors: list[BaseException] = []
        self.untyped: list[BaseException] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,)) for c in cids]

    def _run(self, cid: str) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.billing.track(cid, "messages", value=1)
                self.ok[cid] += 1
            except CommitOutcomeUnknown as exc:
                self.unknown[cid] += 1
                self.errors.append(exc)
            except AutumnError as exc:
                self.errors.append(exc)
                time.sleep(0.01)
            except BaseException as exc:  # an untyped error is a failure of the test
                self.untyped.append(exc)
            self.slowest = max(self.slowest, time.monotonic() - started)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
            assert not t.is_alive(), "a caller hung"


def assert_counts(billing: Autumn, load: Load) -> None:
    """Successful returns = usage = events, allowing only the calls whose outcome the store
    reported as unknown to have gone either way."""
    assert not load.untyped, load.untyped[:3]
    for cid, ok in load.ok.items():
        used = usage(billing, cid)
        assert used == events(billing, cid)
        assert ok <= used <= ok + load.unknown[cid], (cid, ok, used, load.unknown[cid])


@pytest.fixture
def fresh(pg_databases: Any) -> Iterator[tuple[str, str]]:
    url = pg_databases.url(0)
    yield url, url.rsplit("/", 1)[1]


# -- a backend killed mid-transaction ---------------------------------------------------------
def test_a_backend_killed_inside_a_transaction_changes_nothing_and_the_store_recovers(
    pg_cluster: PgCluster, fresh: tuple[str, str]
) -> None:
    """Given a write transaction that holds a customer's lock, when its backend is terminated
    (pg_terminate_backend) before it commits, then the transaction raises a StoreError that says
    nothing changed, the customer is as before, and the next call on the store works."""
    url, dbname = fresh
    store = PostgresStore(url, max_size=1)
    billing = Autumn(catalog(), store=store)
    billing.track("c", "messages", value=1)
    with (
        pytest.raises(StoreError, match="nothing changed") as raised,
        store.transaction() as tx,
    ):
        pk = tx.customer_pk("c")
        assert pk is not None
        before = tx.load_customer(pk, for_update=True)
        assert before is not None
        (pid,) = backends(pg_cluster.url("postgres"), dbname)
        with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        tx.save_customer(CustomerChange.between(before, before))
        tx.load_customer(pk)
    assert raised.value.retryable  # the engine reruns such a call itself
    assert usage(billing, "c") == 1 == events(billing, "c")
    billing.track("c", "messages", value=1)
    assert usage(billing, "c") == 2 == events(billing, "c")
    billing.close()


def test_backends_killed_under_load_double_nothing(
    pg_cluster: PgCluster, fresh: tuple[str, str]
) -> None:
    """Given four callers tracking in a loop, when every backend of the database is terminated
    again and again, then each call returned or raised a typed error, and for every customer
    successful returns = usage = events."""
    url, dbname = fresh
    billing = Autumn(catalog(), store=PostgresStore(url, max_size=4))
    cids = [f"c{i}" for i in range(4)]
    with Load(billing, cids) as load:
        for _ in range(15):
            time.sleep(0.05)
            with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dbname,),
                )
    assert sum(load.ok.values()) > 0
    assert_counts(billing, load)
    FAULTS["backend killed under load"] = _summary(load)
    billing.close()


# -- the server restarted under load ----------------------------------------------------------
@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A cluster of this test alone (it is restarted)."""
    cluster = PgCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_server_restart_under_load_doubles_nothing(own_cluster: PgCluster) -> None:
    """Given four callers tracking in a loop, when the server is restarted (pg_ctl restart),
    then each call returned, was rerun transparently, or raised a typed error, none hung, and
    successful returns = usage = events; after the restart calls succeed again."""
    url = own_cluster.create_database("restart")
    billing = Autumn(catalog(), store=PostgresStore(url, max_size=4, timeout=2))
    cids = [f"c{i}" for i in range(4)]
    with Load(billing, cids) as load:
        time.sleep(0.3)
        res = own_cluster._run(
            [
                own_cluster._bin("pg_ctl"),
                "-D",
                str(own_cluster.data_dir),
                "-l",
                str(own_cluster.log_file),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        time.sleep(0.5)
    assert load.errors or sum(load.ok.values()) > 0
    assert_counts(billing, load)
    before = usage(billing, "c0")
    billing.track("c0", "messages", value=1)
    assert usage(billing, "c0") == before + 1
    FAULTS["server restarted under load"] = _summary(load)
    billing.close()


# -- sessions reset between transactions: a real pgbouncer ------------------------------------
@pytest.fixture
def bouncer(pg_cluster: PgCluster) -> Iterator[PgBouncer]:
    b = PgBouncer(pg_cluster)
    try:
        yield b
    finally:
        b.close()


@pytest.mark.parametrize("pipeline", [False, True])
def test_behind_pgbouncer_in_transaction_mode_every_call_works(
    bouncer: PgBouncer, fresh: tuple[str, str], pipeline: bool
) -> None:
    """Given the store behind pgbouncer (transaction pooling, DISCARD ALL after every
    transaction, two server sessions shared by all clients), when four callers track and
    others attach, check and read, then every call succeeds (named statements lost to a reset
    are prepared again by a transparent rerun; ``pipeline=False`` keeps no session state) and
    successful returns = usage = events."""
    _, dbname = fresh
    billing = Autumn(
        catalog(), store=PostgresStore(bouncer.url(dbname), max_size=4, pipeline=pipeline)
    )
    cids = [f"c{i}" for i in range(4)]
    with Load(billing, cids) as load:
        for i in range(10):
            billing.attach(f"p{i}", "pro")
            assert billing.check(f"p{i}", "messages").allowed
    assert not load.errors, load.errors[:3]
    assert sum(load.ok.values()) > 0
    assert_counts(billing, load)
    assert [p.id for p in billing.customers.get("p9").products] == ["pro"]
    FAULTS[f"DISCARD ALL via pgbouncer (pipeline={pipeline})"] = _summary(load)
    billing.close()


# -- an unreachable or silent server ----------------------------------------------------------
def _refused_port() -> int:
    from tests.pg_cluster import _free_port

    return _free_port()  # nothing listens there


@pytest.mark.parametrize(
    ("make_url", "cause"),
    [
        (lambda c: f"postgresql://postgres@127.0.0.1:{_refused_port()}/x", "refused"),
        (lambda c: c.url("no_such_db"), 'database "no_such_db" does not exist'),
        (
            lambda c: f"postgresql://ghost:s3cret@127.0.0.1:{c.port}/postgres",
            'role "ghost" does not exist',
        ),
        (lambda c: "postgresql://postgres@127.0.0.1:notaport/x", "notaport"),
    ],
    ids=["closed-port", "unknown-database", "unknown-role", "non-numeric-port"],
)
def test_a_failed_connection_says_why_at_once(
    pg_cluster: PgCluster, make_url: Any, cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Given a URL that cannot work, when the store is opened, then it fails at once with one
    StoreError naming the cause (never the password) and logs no retries."""
    url = make_url(pg_cluster)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(StoreError) as raised:
        PostgresStore(url, timeout=5)
    assert time.monotonic() - started < 5  # the cause is known at once: no waiting it out
    assert cause in raised.value.message
    assert "s3cret" not in raised.value.message
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_listener_that_never_answers_fails_within_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Given a port that accepts TCP connections and never answers, when the store is opened
    with timeout=2, then one StoreError says the connection timed out, within the bound."""
    silent = SilentListener()
    caplog.set_level(logging.DEBUG)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError) as raised:
            PostgresStore(f"postgresql://postgres@127.0.0.1:{silent.port}/x", timeout=2)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert elapsed < 2 * 3, elapsed  # bounded (libpq may try IPv4 and SSL/no-SSL: a few x)
    assert "timeout" in raised.value.message.lower()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_server_gone_after_opening_fails_each_call_with_one_store_error(
    own_cluster: PgCluster,
) -> None:
    """Given an open store, when the server stops, then a call fails with one StoreError saying
    it cannot connect (no hang, no rerun loop), and after a restart calls work again."""
    url = own_cluster.create_database("gone")
    billing = Autumn(catalog(), store=PostgresStore(url, timeout=2))
    billing.track("c", "messages", value=1)
    own_cluster._run(
        [own_cluster._bin("pg_ctl"), "-D", str(own_cluster.data_dir), "-m", "fast", "stop"]
    )
    try:
        with pytest.raises(StoreError, match="cannot connect"):
            billing.track("c", "messages", value=1)
    finally:
        own_cluster._start_server()
    # the port may have changed: a new store on the new URL sees the one committed track
    again = Autumn(catalog(), store=PostgresStore(own_cluster.url("gone")))
    assert usage(again, "c") == 1 == events(again, "c")
    billing.close()
    again.close()


# -- a commit whose answer is lost ------------------------------------------------------------
@pytest.fixture
def proxy(pg_cluster: PgCluster) -> Iterator[CuttingProxy]:
    assert pg_cluster.port is not None
    p = CuttingProxy(pg_cluster.port)
    try:
        yield p
    finally:
        p.close()


@pytest.mark.parametrize("before", [True, False], ids=["answer-lost", "lost-after-answer"])
def test_a_session_lost_around_commit_reports_the_true_outcome(
    proxy: CuttingProxy, fresh: tuple[str, str], before: bool
) -> None:
    """Given a track whose session is cut right around COMMIT (the server committed; the client
    hears the COMMIT's answer or not), then the call returns normally (it did commit: found
    out from the COMMIT's answer, or from the transaction id on a fresh connection), and the
    usage and the events count it once."""
    _, dbname = fresh
    billing = Autumn(catalog(), store=PostgresStore(proxy.url(dbname)))
    billing.track("c", "messages", value=1)
    proxy.arm(b"COMMIT", before=before)
    billing.track("c", "messages", value=1)  # no error: it committed
    assert proxy.cuts == 1
    assert usage(billing, "c") == 2 == events(billing, "c")
    billing.close()


def test_a_commit_whose_outcome_cannot_be_known_is_not_called_a_failure(
    proxy: CuttingProxy, fresh: tuple[str, str]
) -> None:
    """Given a track whose COMMIT answer is lost, when no fresh connection can reach the server
    to ask, then the caller gets CommitOutcomeUnknown (not a StoreError, which would mean
    nothing changed); the write did commit."""
    _, dbname = fresh
    billing = Autumn(catalog(), store=PostgresStore(proxy.url(dbname), timeout=2))
    billing.track("c", "messages", value=1)
    proxy.arm(b"COMMIT", before=True)
    proxy.refuse_new = True
    with pytest.raises(CommitOutcomeUnknown) as raised:
        billing.track("c", "messages", value=1)
    assert not isinstance(raised.value, StoreError)
    proxy.refuse_new = False
    assert usage(billing, "c") == 2 == events(billing, "c")
    billing.close()


# -- nothing waits forever ----------------------------------------------------------------------
def test_a_row_lock_held_by_another_session_fails_within_the_lock_timeout(
    fresh: tuple[str, str],
) -> None:
    """Given another session holding the customer's row lock, when a track runs with
    lock_timeout=0.5, then it fails with StoreTimeout having changed nothing, and succeeds once
    the lock is released."""
    url, _ = fresh
    billing = Autumn(catalog(), store=PostgresStore(url, lock_timeout=0.5))
    billing.track("c", "messages", value=1)
    with psycopg.connect(url) as other:
        other.execute("SELECT 1 FROM autumn_customers WHERE id = 'c' FOR UPDATE")
        with pytest.raises(StoreTimeout, match="nothing changed"):
            billing.track("c", "messages", value=1)
        other.rollback()
    assert usage(billing, "c") == 1 == events(billing, "c")
    billing.track("c", "messages", value=1)
    assert usage(billing, "c") == 2 == events(billing, "c")
    billing.close()


def test_a_stopped_backend_fails_the_call_within_the_bound(
    pg_cluster: PgCluster, fresh: tuple[str, str]
) -> None:
    """Given the store's backend stopped with SIGSTOP (it holds the session and answers
    nothing), when a track runs with statement_timeout=1 and timeout=1, then it fails with
    StoreTimeout (the client stops waiting), having changed nothing; once the backend runs
    again, the next call works on a new connection."""
    url, dbname = fresh
    billing = Autumn(
        catalog(), store=PostgresStore(url, max_size=1, statement_timeout=1, timeout=1)
    )
    billing.track("c", "messages", value=1)
    (pid,) = backends(pg_cluster.url("postgres"), dbname)
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(StoreTimeout):
            billing.track("c", "messages", value=1)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert usage(billing, "c") == 1 == events(billing, "c")
    billing.track("c", "messages", value=1)
    assert usage(billing, "c") == 2 == events(billing, "c")
    billing.close()


# -- connections handed back to the pool ------------------------------------------------------
def test_every_connection_comes_back_to_the_pool_clean(fresh: tuple[str, str]) -> None:
    """Given a store with one pooled connection, when a check auto-creates its customer, a
    preview_attach runs for a new customer and an idempotency key is reused with other
    arguments, then each time the connection came back idle and out of pipeline mode, and the
    next call on it sees the latest data and works."""
    url, _ = fresh
    store = PostgresStore(url, max_size=1)
    billing = Autumn(catalog(), store=store)
    pool = store._pool
    assert isinstance(pool, Pool)
    states: list[tuple[Any, Any]] = []
    putconn = pool.putconn

    def recording(conn: psycopg.Connection[Any], *, reusable: bool = True) -> None:
        states.append((conn.info.transaction_status, conn.pgconn.pipeline_status))
        putconn(conn, reusable=reusable)

    pool.putconn = recording  # type: ignore[method-assign]
    assert billing.check("auto", "messages").allowed
    assert billing.customers.get("auto").id == "auto"
    billing.preview_attach("newcomer", "pro")
    billing.track("auto", "messages", value=1, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        billing.track("auto", "messages", value=2, idempotency_key="k")
    assert usage(billing, "auto") == 1 == events(billing, "auto")
    billing.attach("auto", "pro")
    assert [p.id for p in billing.customers.get("auto").products] == ["pro"]
    idle = psycopg.pq.TransactionStatus.IDLE
    off = psycopg.pq.PipelineStatus.OFF
    assert states and all(s == (idle, off) for s in states), states
    billing.close()


def test_domain_errors_leave_no_pool_warnings(
    fresh: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Given a store on the application's own psycopg_pool, when calls end in ordinary domain
    errors, then the pool never has to roll back a returned connection (no warning)."""
    from psycopg_pool import ConnectionPool

    url, _ = fresh
    caplog.set_level(logging.WARNING)
    with ConnectionPool(url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        billing = Autumn(catalog(), store=PostgresStore(pool))
        billing.track("c", "messages", value=1, idempotency_key="k")
        for call in (
            lambda: billing.track("c", "messages", value=2, idempotency_key="k"),
            lambda: billing.attach("c", "nope"),
            lambda: billing.customers.get("ghost"),
        ):
            with pytest.raises(AutumnError):
                call()
        billing.preview_attach("new", "pro")
        billing.check("auto", "messages")
        assert usage(billing, "c") == 1
        billing.close()
    assert not [r for r in caplog.records if "rolling back" in r.getMessage()]


# -- the table for the closing note -------------------------------------------------------------
FAULTS: dict[str, str] = {}


def _summary(load: Load) -> str:
    kinds: dict[str, int] = {}
    for e in load.errors:
        kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
    return (
        f"ok={sum(load.ok.values())} unknown={sum(load.unknown.values())} errors={kinds}"
        f" slowest={load.slowest:.2f}s"
    )


@pytest.fixture(scope="module", autouse=True)
def _print_fault_table() -> Iterator[None]:
    yield
    if FAULTS and os.environ.get("AUTUMN_FAULT_TABLE"):
        with open(os.environ["AUTUMN_FAULT_TABLE"], "a") as out:
            for name, line in FAULTS.items():
                out.write(f"{name}: {line}\n")
