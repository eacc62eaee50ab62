"""PostgresStore: one engine shared by many processes and hosts through one PostgreSQL database.

How it keeps the Store port's promises with psycopg 3:

- **One transaction per call, at READ COMMITTED, on one connection owned by ``wire.Wire``**
  from ``BEGIN`` to ``COMMIT``/``ROLLBACK``. Every statement goes through the wire, a thin
  pipelined executor on the connection's libpq handle (psycopg's documented ``pq`` layer):
  ``BEGIN`` travels with the first statement, statements whose result nobody waits for (the
  customer save, events, invoices) are queued, and ``COMMIT`` travels with them in one Sync.
  A ``track`` is two round trips: find and lock the customer, read it; then write the changed
  rows, the event and commit. Statements are named prepared statements, prepared inside the
  pipeline; psycopg itself prepares nothing (``prepare_threshold=None``) and runs no statement
  inside a transaction, so no driver behaviour (deallocation after a ROLLBACK, its statement
  cache) can disturb them. A session found reset between transactions (``DISCARD ALL``, a
  transaction-pooling proxy) answers 26000: the call is rerun and that connection sends its
  statements unnamed from then on. (``pipeline=False`` sends every statement on its own,
  unnamed.)
- **Rows locked in a fixed order.** ``load_customer(pk, for_update=True)`` takes the customer row
  with ``SELECT ... FOR UPDATE`` before anything else of that customer is read, so concurrent
  writes to one customer queue on that row (they wait, they do not fail) while writes to other
  customers run in parallel. The customer and its children (balance rows, products, entities)
  are read by a *second* statement: at READ COMMITTED a locking statement that had to wait
  returns the newest customer row but would read other tables with the snapshot it started
  with, i.e. the children as they were before the previous lock holder committed. The second
  statement is sent in the same pipeline (one round trip); the server runs a pipeline's
  statements in order, so it starts, and takes its snapshot, after the lock was granted and
  sees them as committed. (Schema v1's ``autumn_lock_customer`` did both in one PL/pgSQL call;
  two plain statements cost the server less. The function stays for processes of the previous
  release during an upgrade.)
- **Optimistic writes.** ``optimistic_transaction()`` reads customers without ``FOR UPDATE``;
  the save's version check (which every customer save makes) refuses a customer another
  transaction saved since, with 40001 (retryable). The core uses it for a ``track``'s first
  attempt and reruns a lost one at once the locking way, so on a hot customer the row lock is
  held only while the save runs, not while the client decides.
- **Read transactions** see one snapshot without costing a ``check`` anything: the first
  statement runs on its own (autocommit: one statement is one snapshot, no ``BEGIN``/``COMMIT``),
  and only a second statement opens ``REPEATABLE READ READ ONLY``, replaying the first in the
  same pipeline and comparing: same result, and all the transaction reads is that snapshot's;
  a different one (a commit came in between) fails the call with ``RetryableStoreError``, which
  the core runs again (``PostgresTransaction._read``). The snapshot is therefore taken at the
  second statement, not the first; a multi-statement read costs one more statement and a
  ``COMMIT`` round trip. ``customer_pk`` in a read transaction fetches the whole customer in the
  same statement, so a ``check`` with nothing due is one round trip (one statement). In a write
  transaction ``customer_pk`` locks and fetches the customer the same way, because loading it
  for update is always the next step.
- **Saves write only what changed**, with a statement variant per kind of change (which child
  tables have upserts or deletes), so a ``track`` runs one small CTE, not six empty ones.
- **A parse cache.** A ``CustomerState`` is parsed once per committed version: every load sends
  the (seq, version) it has cached and the server returns the documents only when they differ.
  Cache entries written by a transaction are published only after it commits. The documents
  come back as text (each child table's documents one per line), and an entry remembers which
  text each of its records was parsed from: when another process saved the customer (on a hot
  customer, nearly every time), only the documents whose text changed are parsed, the other
  records are shared (they are immutable). That memo is a pure function of the text, holds one
  version's documents, and lives and dies with the entry.
- **Uniqueness is a constraint.** Customer id, id-less email, idempotency key, trial claims,
  renewal markers and gateway event ids are unique indexes; claims are ``INSERT ... ON CONFLICT
  DO NOTHING`` and report whether they inserted.
- **Errors.** ``translate`` is the one place where server, connection, pool and decoding
  failures become ``UniqueViolation`` / ``StoreError``. Serialization failures, deadlocks, a
  reset session (40001, 40P01, 26000, 42P05) and a connection lost before COMMIT was sent
  become ``RetryableStoreError`` (``retryable = True``): the server rolled the transaction
  back, so the caller may run the whole call again; ``autumn_core`` does, with a bound. A lock
  or statement timeout (55P03, 57014) or a server that stops answering is ``StoreTimeout``
  (never rerun). A connection lost *while committing* is settled, not guessed (see
  ``PostgresStore``): the caller gets the true outcome or ``CommitOutcomeUnknown``.
- **Connections** come from the store's own small pool (``autumn_postgres.pool``): opened on
  demand in the caller's thread with ``connect_timeout`` and TCP keepalives, so a failure to
  connect is one ``StoreError`` naming the server's reason (never the password), with no
  background retries; a connection goes back to the pool only idle, out of pipeline mode and
  with nothing unread, else it is closed; after a dead one the idle ones are dropped too (a
  restarted server killed them all).
- **Layout.** The document mapping (child tables, head document, codec, parse cache) is the
  SQL stores' shared ``autumn_sqldoc``; here live the SQL (``sql``), the session and its
  snapshot reads (``session``), the customers (``transaction``), the other records
  (``records``), the error mapping (``errors``), the wire and pool, and, in this module, the
  connections, commit settlement and migrations.
- **Processes.** A store must be opened in the process that uses it (the pool's threads do not
  survive ``fork``); using one across ``fork`` raises ``StoreError``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any, Final

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from autumn_core.errors import CommitOutcomeUnknown, InvalidRequest, StoreError
from autumn_core.ports import StoreCapabilities
from autumn_postgres import schema
from autumn_postgres.errors import RetryableStoreError, translate
from autumn_postgres.pool import Pool, PoolExhausted
from autumn_postgres.session import Conn, Entry
from autumn_postgres.transaction import PostgresTransaction
from autumn_postgres.wire import CommitInDoubt, ConnectionLost, Wire
from autumn_sqldoc.cache import ParseCache

DEFAULT_CACHE_SIZE: Final = 10_000
DEFAULT_POOL_MAX: Final = 10
#: Seconds to connect, or to wait for a free pooled connection.
DEFAULT_TIMEOUT: Final = 5.0
#: Seconds to wait for a row lock another session holds (like SQLite's lock wait).
DEFAULT_LOCK_TIMEOUT: Final = 5.0
#: Seconds one statement may run on the server.
DEFAULT_STATEMENT_TIMEOUT: Final = 30.0
#: Seconds a customer counts as contended after an optimistic save of it lost a race: its
#: optimistic writes lock it from the start meanwhile (see ``optimistic_transaction``).
CONTENDED_S: Final = 2.0


def _describe(conninfo: str) -> str:
    """host:port/dbname of a conninfo, never the password (for repr and messages)."""
    try:
        d = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "?"
    return f"{d.get('host', '')}:{d.get('port', '')}/{d.get('dbname', '')}"


def _password(conninfo: str) -> str | None:
    try:
        value = conninfo_to_dict(conninfo).get("password")
    except psycopg.Error:
        return None
    return None if value is None else str(value)


#: connection -> names of the wire's statements prepared on it (see ``_prepared_on``).
_PREPARED: Final[weakref.WeakKeyDictionary[Conn, set[bytes]]] = weakref.WeakKeyDictionary()
_PREPARED_LOCK: Final = threading.Lock()


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidRequest(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class PostgresStore:
    """The PostgreSQL store: ``PostgresStore("postgresql://user:pw@host:port/db")``.

    Also accepts a ``psycopg_pool.ConnectionPool`` the application already has (the store then
    does not close it). Opening connects once (so a wrong host, port, database, role or password
    fails here, with the server's reason and without the password) and migrates the schema
    (see ``autumn_postgres.schema``).

    Bounds, all in seconds, so that nothing waits forever:

    - ``timeout`` (5): connecting (``connect_timeout``), and waiting for a free connection
      when ``max_size`` are in use; past it a call fails with ``StoreTimeout``.
    - ``lock_timeout`` (5, like SQLite's lock wait): waiting for a row another session holds;
      ``statement_timeout`` (30): one statement on the server. Past either the server cancels
      the statement, the transaction rolls back and the call fails with ``StoreTimeout``,
      having changed nothing. (Sent as the connection's startup ``options``; a proxy that
      drops them leaves the client-side bound below.)
    - The client never waits for an answer longer than ``statement_timeout + timeout``, and
      TCP keepalives notice a dead peer: a stalled server (or network) fails the call with
      ``StoreTimeout`` and the connection is discarded.

    Outcomes: a call that raises ``StoreError`` changed nothing. When the connection fails
    while a write is committing, the store finds out what happened: the COMMIT's own answer, if
    it arrived, or else the transaction's id (read in the same round trip) looked up on a fresh
    connection (``pg_xact_status``). Committed: the call returns normally. Rolled back:
    ``StoreError``. Not knowable (the id never arrived, or the server cannot be reached, or the
    transaction is still running on a stalled server): ``CommitOutcomeUnknown``, which is not a
    ``StoreError`` — the write may have happened.

    ``max_size`` bounds the connections this store opens, ``cache_size`` how many parsed
    customers are kept. ``pipeline=False`` sends every statement on its own, unnamed (no
    session state between transactions): for proxies that multiplex sessions, such as
    pgbouncer in transaction mode.

    Example:
        ```python
        store = PostgresStore("postgresql://app:secret@db/billing", max_size=20, timeout=5)
        billing = Autumn(catalog, store=store)
        ```
    """

    capabilities = StoreCapabilities(multi_process=True, durable=True)

    def __init__(
        self,
        url_or_pool: str | ConnectionPool[Any],
        *,
        min_size: int = 1,
        max_size: int = DEFAULT_POOL_MAX,
        timeout: float = DEFAULT_TIMEOUT,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
        cache_size: int = DEFAULT_CACHE_SIZE,
        pipeline: bool = True,
    ) -> None:
        self._cache_size = max(0, int(cache_size))
        self._use_pipeline = bool(pipeline)
        #: pk -> (seq, version, state, parts) of committed states (``autumn_sqldoc.cache``);
        #: a slow reader never puts back an older version of the same row.
        self.cache: ParseCache[Entry] = ParseCache(
            cache_size, newer=lambda old, new: old[0] == new[0] and old[1] > new[1]
        )
        #: customer id -> pk, a hint for the cache (a wrong hint only costs a cache miss).
        self._ids: dict[str, str] = {}
        #: pk -> when an optimistic save of it last lost a race (``time.monotonic``).
        self._contended: dict[str, float] = {}
        self._closed = False
        self._pid = os.getpid()
        self._timeout = _seconds("timeout", timeout)
        lock_s = _seconds("lock_timeout", lock_timeout)
        statement_s = _seconds("statement_timeout", statement_timeout)
        #: How long the client waits for any answer before abandoning the connection.
        self._wait_limit = statement_s + self._timeout
        self._pool: Pool | ConnectionPool[Any]
        if isinstance(url_or_pool, ConnectionPool):
            self._pool = url_or_pool
            self._owns_pool = False
            conninfo = url_or_pool.conninfo
            self._conninfo = conninfo if isinstance(conninfo, str) else conninfo()
            self._connect_kwargs: dict[str, Any] = {"autocommit": True}
        elif isinstance(url_or_pool, str):
            try:
                params = conninfo_to_dict(url_or_pool)
            except psycopg.Error as exc:
                raise InvalidRequest(f"not a PostgreSQL URL: {exc}") from None
            if not (0 < min_size <= max_size):
                raise InvalidRequest(f"need 0 < min_size <= max_size, got {min_size}, {max_size}")
            self._conninfo = url_or_pool
            bounds = f"-c lock_timeout={int(lock_s * 1000)} -c statement_timeout={int(statement_s * 1000)}"
            options = f"{params['options']} {bounds}" if params.get("options") else bounds
            self._connect_kwargs = {
                "autocommit": True,
                # psycopg prepares and deallocates nothing: the wire owns the session's
                # prepared statements.
                "prepare_threshold": None,
                "connect_timeout": max(2, round(self._timeout)),
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
                "tcp_user_timeout": int(self._wait_limit * 1000),
                "options": options,
            }
            self._pool = Pool(
                url_or_pool,
                max_size=max_size,
                timeout=self._timeout,
                kwargs=self._connect_kwargs,
            )
            self._owns_pool = True
        else:
            raise InvalidRequest(
                f"PostgresStore needs a postgresql:// URL or a ConnectionPool, got {url_or_pool!r}"
            )
        self._where = _describe(self._conninfo)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r})"

    # -- public -------------------------------------------------------------------------------
    def transaction(self, *, write: bool = True) -> PostgresTransaction:
        """A context manager running one transaction (see the module docstring).

        Example:
            ```python
            with store.transaction(write=False) as tx:
                pk = tx.customer_pk("user-1")
            ```
        """
        if self._closed:
            raise StoreError("the store is closed")
        return PostgresTransaction(self, write)

    def optimistic_transaction(self) -> PostgresTransaction:
        """A write transaction that reads customers without locking them
        (``autumn_core.ports.OptimisticStore``): the save's version check, which a customer
        save always makes, refuses one that another transaction saved since (40001, retryable).
        The row lock is then held only while the save runs, not while the engine decides.

        On a customer many writers save at once (a hot customer), most optimistic attempts
        would lose and run again: after one loses, writes of that customer lock it from the
        start for ``CONTENDED_S`` seconds (this process's writes; each process learns alone).

        Example:
            ```python
            with store.optimistic_transaction() as tx:
                pk = tx.customer_pk("user-1")
            ```
        """
        if self._closed:
            raise StoreError("the store is closed")
        return PostgresTransaction(self, True, optimistic=True)

    def close(self) -> None:
        """Release the pool (if this store made it); later calls raise ``StoreError``.

        Example:
            ```python
            store = PostgresStore("postgresql://app:secret@db/billing")
            store.close()
            ```
        """
        self._closed = True
        if self._owns_pool:
            with contextlib.suppress(Exception):
                self._pool.close()
        self.cache.clear()
        self._ids.clear()

    def schema_version(self) -> int:
        """The schema version of the database (the highest applied migration).

        Example:
            ```python
            print(PostgresStore("postgresql://app:secret@db/billing").schema_version)
            ```
        """
        with self._connection() as conn:
            return self._db_version(conn)

    # -- connections --------------------------------------------------------------------------
    def _cannot_connect(self, exc: BaseException) -> StoreError:
        """A failure to connect, naming the server's reason (never the password)."""
        if isinstance(exc, PoolExhausted | PoolTimeout | PoolClosed):
            return translate(exc)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        secret = _password(self._conninfo)
        if secret:
            reason = reason.replace(secret, "***")
        return StoreError(f"cannot connect to PostgreSQL at {self._where}: {reason}")

    def _acquire(self) -> Conn:
        if self._closed:
            raise StoreError("the store is closed")
        if os.getpid() != self._pid:
            raise StoreError("a PostgresStore cannot be used after fork: open one in each process")
        try:
            conn: Conn = self._pool.getconn()
        except (PoolExhausted, PoolTimeout, PoolClosed, psycopg.Error) as exc:
            raise self._cannot_connect(exc) from None
        try:
            if not conn.autocommit:  # a caller-supplied pool
                conn.autocommit = True
            conn.prepare_threshold = None
        except psycopg.Error as exc:
            self._give_back(conn, reusable=False)
            raise translate(exc) from exc
        return conn

    def _wire_on(self, conn: Conn) -> Wire:
        return Wire(
            conn,
            self._prepared_on(conn),
            wait_limit=self._wait_limit,
            named=self._use_pipeline,
            eager=not self._use_pipeline,
        )

    @staticmethod
    def _prepared_on(conn: Conn) -> set[bytes]:
        """The wire's statement names prepared on ``conn``: per connection, not per store, since
        two stores may share one pool."""
        names = _PREPARED.get(conn)
        if names is None:
            with _PREPARED_LOCK:
                names = _PREPARED.setdefault(conn, set())
        return names

    def _release(self, conn: Conn, wire: Wire) -> None:
        """Hand a connection back: only a clean one (idle, out of pipeline mode, nothing
        unread) is kept; any other is rolled back once more or closed."""
        if not wire.clean and not wire.broken:
            with contextlib.suppress(ConnectionLost):
                wire.abort()
        reusable = wire.clean
        self._give_back(conn, reusable=reusable)
        if wire.broken and isinstance(self._pool, Pool):
            # A dead connection usually means the server restarted: so are the idle ones.
            self._pool.discard_idle()

    def _give_back(self, conn: Conn, *, reusable: bool) -> None:
        pool = self._pool
        if isinstance(pool, Pool):
            pool.putconn(conn, reusable=reusable)
            return
        if not reusable:
            with contextlib.suppress(Exception):
                conn.close()  # psycopg_pool drops a closed connection
        with contextlib.suppress(Exception):
            pool.putconn(conn)

    def _settle(self, doubt: CommitInDoubt) -> None:
        """Find out what became of a transaction whose COMMIT's answer was lost: return if it
        committed, raise ``StoreError`` if it rolled back, ``CommitOutcomeUnknown`` otherwise."""
        if doubt.xid is None:
            raise CommitOutcomeUnknown(
                f"the connection to PostgreSQL at {self._where} failed while committing"
                f" ({doubt.cause}), before the transaction's id arrived: the write may or may"
                " not have happened"
            )
        status = None
        deadline = time.monotonic() + self._timeout
        try:
            with psycopg.connect(self._conninfo, **self._connect_kwargs) as conn:
                while True:
                    row = conn.execute(
                        "SELECT pg_xact_status(%s::xid8)", (doubt.xid,), prepare=False
                    ).fetchone()
                    status = None if row is None else row[0]
                    if status != "in progress" or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
        except psycopg.Error as exc:
            raise CommitOutcomeUnknown(
                f"the connection to PostgreSQL at {self._where} failed while committing"
                f" ({doubt.cause}), and a new connection could not find out whether it"
                f" committed ({self._cannot_connect(exc).message}): the write may or may not"
                " have happened"
            ) from None
        if status == "committed":
            return
        if status == "aborted":
            raise StoreError(
                f"the connection to PostgreSQL failed while committing ({doubt.cause}); the"
                " server rolled the transaction back, nothing changed"
            )
        raise CommitOutcomeUnknown(
            f"the connection to PostgreSQL at {self._where} failed while committing"
            f" ({doubt.cause}); transaction {doubt.xid} is {status or 'unknown'} on the server:"
            " the write may or may not have happened"
        )

    @contextlib.contextmanager
    def _connection(self) -> Any:
        conn = self._acquire()
        ok = False
        try:
            yield conn
            ok = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        except psycopg.Error as exc:
            raise translate(exc) from exc
        finally:
            self._give_back(conn, reusable=ok)

    # -- the id hints ------------------------------------------------------------------------
    def _lost_race(self, pks: Iterable[str]) -> None:
        """An optimistic save of these customers lost a race: lock them for a while."""
        now = time.monotonic()
        contended = self._contended
        if len(contended) >= max(1, self._cache_size):
            contended.clear()
        for pk in pks:
            contended[pk] = now

    def _is_contended(self, pk: str) -> bool:
        lost = self._contended.get(pk)
        return lost is not None and time.monotonic() - lost < CONTENDED_S

    def _remember_id(self, customer_id: str, pk: str) -> None:
        """Note which pk an id belongs to (bounded like the cache: a hint, safe to forget)."""
        ids = self._ids
        if len(ids) >= max(1, 2 * self._cache_size):
            ids.clear()
        ids[customer_id] = pk

    # -- migrations ---------------------------------------------------------------------------
    @staticmethod
    def _db_version(conn: Conn) -> int:
        row = conn.execute(
            f"SELECT to_regclass('{schema.MIGRATIONS_TABLE}') IS NOT NULL"
        ).fetchone()
        if row is None or not row[0]:
            return 0
        row = conn.execute(
            f"SELECT coalesce(max(version), 0) FROM {schema.MIGRATIONS_TABLE}"
        ).fetchone()
        return int(row[0]) if row is not None else 0

    def _check_version(self, version: int, target: int) -> None:
        if version > target:
            raise StoreError(
                f"the database at {self._where} has autumn schema version {version}, newer than"
                f" this autumn_postgres understands ({target}); upgrade autumn-embedded"
            )

    def _migrate(self) -> None:
        """Bring the schema to ``current_version()``, once, however many processes open at once.

        A lock-free look first (the common case: nothing to do, no queueing at start-up); then
        the missing steps in one transaction under ``pg_advisory_xact_lock``, re-reading the
        version after the lock is granted because another process may have just migrated.
        """
        target = schema.current_version()
        with self._connection() as conn:
            version = self._db_version(conn)
            self._check_version(version, target)
            if version == target:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.MIGRATION_LOCK_KEY,))
                conn.execute(schema.CREATE_MIGRATIONS_TABLE)
                version = self._db_version(conn)
                self._check_version(version, target)
                for step in range(version, target):
                    for statement in schema.MIGRATIONS[step]:
                        conn.execute(statement)
                    conn.execute(
                        f"INSERT INTO {schema.MIGRATIONS_TABLE} (version) VALUES (%s)",
                        (step + 1,),
                    )


__all__ = ["PostgresStore", "PostgresTransaction", "RetryableStoreError", "translate"]
