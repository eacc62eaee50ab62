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
- **Processes.** A store must be opened in the process that uses it (the pool's threads do not
  survive ``fork``); using one across ``fork`` raises ``StoreError``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar

import attrs
import cattrs
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from autumn_core import model
from autumn_core.errors import (
    AutumnError,
    CommitOutcomeUnknown,
    InvalidRequest,
    StoreError,
    StoreTimeout,
    UniqueViolation,
)
from autumn_core.model import (
    CustomerState,
    EntityState,
    EventRecord,
    IdempotencyRecord,
    InvoiceRecord,
    PendingRecord,
    ProductState,
    ProductVersionRecord,
    RowState,
)
from autumn_core.ports import StoreCapabilities
from autumn_core.rules.due import next_due_at
from autumn_postgres import codec, schema
from autumn_postgres.outbox import OutboxTable
from autumn_postgres.pool import Pool, PoolExhausted
from autumn_postgres.wire import (
    BEGIN_SNAPSHOT,
    DUPLICATE_STATEMENT,
    UNKNOWN_STATEMENT,
    CommitInDoubt,
    ConnectionLost,
    ServerError,
    Statement,
    Wire,
    WireTimeout,
    rows,
)

P = ParamSpec("P")
R = TypeVar("R")

Conn = psycopg.Connection[Any]

IDEMPOTENCY_TTL: Final = timedelta(hours=24)
DEFAULT_CACHE_SIZE: Final = 10_000
DEFAULT_POOL_MAX: Final = 10
#: Seconds to connect, or to wait for a free pooled connection.
DEFAULT_TIMEOUT: Final = 5.0
#: Seconds to wait for a row lock another session holds (like SQLite's lock wait).
DEFAULT_LOCK_TIMEOUT: Final = 5.0
#: Seconds one statement may run on the server.
DEFAULT_STATEMENT_TIMEOUT: Final = 30.0

#: SQLSTATEs after which the server has rolled the transaction back and a rerun may succeed
#: (26000: a prepared statement vanished because someone reset the session; it is prepared
#: again on the rerun).
RETRYABLE_SQLSTATES: Final = frozenset({"40001", "40P01", UNKNOWN_STATEMENT, DUPLICATE_STATEMENT})
#: SQLSTATEs of a bound reached on the server: statement timeout (57014), lock timeout (55P03).
#: Never re-run by the core (a rerun would multiply the wait).
TIMEOUT_SQLSTATES: Final = frozenset({"57014", "55P03"})

_CHILDREN: Final = ("products", "rows", "entities")


# -- the one place driver errors are translated ----------------------------------------------


class RetryableStoreError(StoreError):
    """The server gave up on the transaction (serialization failure, deadlock, a session that
    lost its prepared statements, a connection lost before COMMIT was sent) and rolled it back;
    nothing happened and running the whole call again may succeed."""

    retryable: bool = True


def translate(exc: BaseException) -> StoreError:
    """Map a driver, wire, pool or decoding exception to the core's error, keeping its message."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, WireTimeout):
        return StoreTimeout(f"{exc}; the transaction was abandoned, nothing changed")
    if isinstance(exc, ConnectionLost):
        return RetryableStoreError(
            f"lost the connection to PostgreSQL before the transaction committed ({exc});"
            " nothing changed"
        )
    if isinstance(exc, PoolExhausted | PoolTimeout):
        return StoreTimeout(f"no PostgreSQL connection became available: {exc}")
    if isinstance(exc, PoolClosed):
        return StoreError("the store is closed")
    if isinstance(exc, ServerError | psycopg.Error):
        state = exc.sqlstate
        detail = exc.message if isinstance(exc, ServerError) else str(exc).strip()
        if state == "23505":
            return UniqueViolation(f"a uniqueness constraint refused the write ({detail})")
        if state in RETRYABLE_SQLSTATES:
            return RetryableStoreError(
                f"PostgreSQL rolled the transaction back ({state}: {detail}); nothing changed"
            )
        if state in TIMEOUT_SQLSTATES:
            return StoreTimeout(f"PostgreSQL gave up waiting ({state}: {detail}); nothing changed")
        if (
            state is None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        ) or (state is not None and state.startswith(("08", "57P"))):
            return StoreError(f"lost the connection to PostgreSQL ({detail or type(exc).__name__})")
        return StoreError(f"PostgreSQL failed ({state}: {detail})")
    if isinstance(exc, ValueError | TypeError | KeyError | cattrs.BaseValidationError):
        return StoreError(f"stored data could not be read back ({exc!r})")
    return StoreError(f"the store failed: {exc!r}")


def _translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Every transaction method runs through ``translate``, so callers see only core errors."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AutumnError:
            raise
        except (
            ServerError,
            ConnectionLost,
            psycopg.Error,
            ValueError,
            TypeError,
            KeyError,
            cattrs.BaseValidationError,
        ) as exc:
            raise translate(exc) from exc

    return wrapper


# -- SQL ------------------------------------------------------------------------------------


@attrs.frozen
class _Child:
    """How one tuple of the aggregate maps to its child table."""

    attr: str
    table: str
    key: str
    cls: type[Any]
    prefix: str
    #: Extra columns filled from the record (name, SQL type), for SQL that must see them.
    extra: tuple[tuple[str, str], ...] = ()


_CHILD_SPECS: Final = (
    _Child(
        "products",
        "autumn_customer_products",
        "instance_id",
        ProductState,
        "p",
        (("product_id", "text"), ("version", "int")),
    ),
    _Child("rows", "autumn_balance_rows", "id", RowState, "r"),
    _Child("entities", "autumn_entities", "id", EntityState, "e"),
)


def _child_ctes(spec: _Child, *, replace: bool, up: bool = True, delete: bool = True) -> str:
    """Upsert the given children and delete the removed ones, only if the head was written.

    Changes arrive as one JSON array per table (``{p}_up``: objects with id, pos, data and the
    extra columns), not as one SQL array per column: a single text parameter is far cheaper for
    the client to send than arrays of JSON strings, which psycopg must escape character by
    character. With ``replace`` the children not named in ``{p}_keep`` are deleted (the store
    does not know what the database holds); otherwise exactly the ids in ``{p}_del``.
    """
    p = spec.prefix
    extra_cols = "".join(f", {name}" for name, _ in spec.extra)
    extra_types = "".join(f", {name} {typ}" for name, typ in spec.extra)
    extra_x = "".join(f", x.{name}" for name, _ in spec.extra)
    extra_set = "".join(f", {name} = excluded.{name}" for name, _ in spec.extra)
    ids = "SELECT jsonb_array_elements_text(%({p}_{which})s::jsonb)"
    removed = (
        f"id NOT IN ({ids.format(p=p, which='keep')})"
        if replace
        else f"id IN ({ids.format(p=p, which='del')})"
    )
    upsert = f"""
    , {p}_up AS (
        INSERT INTO {spec.table} (customer_pk, id, pos{extra_cols}, data)
        SELECT %(pk)s, x.id, x.pos{extra_x}, x.data
        FROM jsonb_to_recordset(%({p}_up)s::jsonb) AS x(id text, pos int{extra_types}, data jsonb)
        WHERE EXISTS (SELECT 1 FROM head)
        ON CONFLICT (customer_pk, id) DO UPDATE
        SET pos = excluded.pos{extra_set}, data = excluded.data
    )"""
    remove = f"""
    , {p}_del AS (
        DELETE FROM {spec.table}
        WHERE customer_pk = %(pk)s AND {removed} AND EXISTS (SELECT 1 FROM head)
    )"""
    return (upsert if up else "") + (remove if delete else "")


_CHILD_CTES: Final = "".join(_child_ctes(spec, replace=False) for spec in _CHILD_SPECS)
_CHILD_CTES_REPLACE: Final = "".join(_child_ctes(spec, replace=True) for spec in _CHILD_SPECS)

_INSERT_CUSTOMER: Final = f"""
WITH head AS (
    INSERT INTO autumn_customers (pk, id, email_lower, created_at, next_due_at, version, head)
    VALUES (%(pk)s, %(id)s, %(email_lower)s, %(created_at)s, %(due)s, %(version)s,
            %(head)s::jsonb)
    ON CONFLICT DO NOTHING
    RETURNING seq
){_CHILD_CTES}
SELECT seq FROM head
"""

#: Save against the state this transaction knows the database holds: write only the difference,
#: and fail (40001, retryable) if the row is not at that version after all.
_UPDATE_CUSTOMER: Final = f"""
WITH head AS (
    UPDATE autumn_customers
    SET id = %(id)s, email_lower = %(email_lower)s, next_due_at = %(due)s,
        version = %(version)s, head = coalesce(%(head)s::jsonb, head)
    WHERE pk = %(pk)s AND version = %(base_version)s
    RETURNING seq
){_CHILD_CTES}
SELECT autumn_assert(EXISTS (SELECT 1 FROM head), %(lost)s)
"""


@functools.cache
def _update_customer(parts: tuple[bool, ...]) -> str:
    """``_UPDATE_CUSTOMER`` with only the child CTEs that have work (``parts``: upserts and
    deletes per child spec, in order): a track changes one balance row, and the server plans
    and runs one CTE instead of six. At most 64 variants, each prepared once per connection."""
    ctes = "".join(
        _child_ctes(spec, replace=False, up=parts[2 * i], delete=parts[2 * i + 1])
        for i, spec in enumerate(_CHILD_SPECS)
    )
    return _UPDATE_CUSTOMER.replace(_CHILD_CTES, ctes)


@functools.cache
def _wire_statement(sql: str) -> Statement:
    return Statement(sql)


def _doc(text: str | None) -> Any:
    """A jsonb column read as text."""
    if text is None:
        raise StoreError("a stored document is missing")
    return json.loads(text)


#: Save without knowing what the database holds (``before`` was not read by this
#: transaction): write ``after`` whole and delete every child it does not list.
_REPLACE_CUSTOMER: Final = f"""
WITH head AS (
    UPDATE autumn_customers
    SET id = %(id)s, email_lower = %(email_lower)s, next_due_at = %(due)s,
        version = version + 1, head = %(head)s::jsonb
    WHERE pk = %(pk)s
    RETURNING seq
){_CHILD_CTES_REPLACE}
SELECT seq FROM head
"""


#: Separates the child documents of one table in a customer read. ``jsonb`` text output never
#: holds a raw newline (one inside a string is escaped as backslash-n), so splitting on it is exact.
_DOC_SEP: Final = "\n"


def _agg(table: str, alias: str = "c") -> str:
    """The documents of one child table as text, in order, one per line ('' for none): the
    client parses only the documents it has not parsed before (``PostgresTransaction._state``).
    """
    return (
        f"(SELECT coalesce(string_agg(t.data::text, chr(10) ORDER BY t.pos), '') FROM {table} t"
        f" WHERE t.customer_pk = {alias}.pk)"
    )


_AGGS: Final = ", ".join(_agg(spec.table) for spec in _CHILD_SPECS)

#: Columns of a full customer read: pk, seq, version, head, products, rows, entities (the
#: documents as text).
_FULL: Final = f"c.pk, c.seq, c.version, c.head::text, {_AGGS}"

#: The same, but the documents only when the caller's cached (pk, seq, version) is stale.
_HIT: Final = "(c.pk = %(hpk)s AND c.seq = %(hseq)s::bigint AND c.version = %(hver)s::bigint)"
_CACHED: Final = (
    f"c.pk, c.seq, c.version, CASE WHEN {_HIT} THEN NULL ELSE c.head::text END, "
    + ", ".join(f"CASE WHEN {_HIT} THEN NULL ELSE {_agg(spec.table)} END" for spec in _CHILD_SPECS)
)

_READ_BY_ID: Final = f"SELECT {_CACHED} FROM autumn_customers c WHERE c.id = %(key)s"
_READ_BY_PK: Final = f"SELECT {_CACHED} FROM autumn_customers c WHERE c.pk = %(key)s"

#: Write path: lock the customer row; the documents are read by the *next* statement of the same
#: pipeline (``_READ_BY_ID`` / ``_READ_BY_PK``), which starts after the lock was granted.
_LOCK_BY_ID: Final = "SELECT c.pk FROM autumn_customers c WHERE c.id = %(key)s FOR UPDATE"
_LOCK_BY_PK: Final = "SELECT c.pk FROM autumn_customers c WHERE c.pk = %(key)s FOR UPDATE"

_DELETE_CUSTOMER: Final = """
WITH a AS (DELETE FROM autumn_customer_products WHERE customer_pk = %(pk)s),
     b AS (DELETE FROM autumn_balance_rows WHERE customer_pk = %(pk)s),
     e AS (DELETE FROM autumn_entities WHERE customer_pk = %(pk)s),
     ev AS (DELETE FROM autumn_events WHERE customer_pk = %(pk)s),
     i AS (DELETE FROM autumn_idempotency WHERE customer_pk = %(pk)s),
     t AS (DELETE FROM autumn_trial_subject_claims WHERE customer_pk = %(pk)s),
     inv AS (DELETE FROM autumn_invoices WHERE customer_pk = %(pk)s)
DELETE FROM autumn_customers WHERE pk = %(pk)s
"""

#: One event (what a track appends): a plain VALUES row, the columns sent beside the document.
_INSERT_EVENT: Final = """
INSERT INTO autumn_events
    (id, customer_pk, entity_id, feature_id, event_name, value, ts, created_at, data)
VALUES (%(id)s, %(pk)s, %(entity)s, %(feature)s, %(name)s, %(value)s::numeric,
        %(ts)s::timestamptz, %(created)s::timestamptz, %(data)s::jsonb)
"""

#: One JSON array of event documents; the indexed columns are taken from the documents.
_INSERT_EVENTS: Final = """
INSERT INTO autumn_events
    (id, customer_pk, entity_id, feature_id, event_name, value, ts, created_at, data)
SELECT d->>'id', d->>'customer_pk', d->>'entity_id', d->>'feature_id', d->>'event_name',
       (d->>'value')::numeric, (d->>'timestamp')::timestamptz, (d->>'created_at')::timestamptz, d
FROM jsonb_array_elements(%(events)s::jsonb) AS d
"""

#: The statements of the hot paths, sent through ``wire.Wire`` (see the module docstring).
_W_LOCK_BY_ID: Final = Statement(_LOCK_BY_ID)
_W_LOCK_BY_PK: Final = Statement(_LOCK_BY_PK)
_W_READ_BY_ID: Final = Statement(_READ_BY_ID)
_W_READ_BY_PK: Final = Statement(_READ_BY_PK)
_W_EVENTS: Final = Statement(_INSERT_EVENTS)
_W_EVENT: Final = Statement(_INSERT_EVENT)


_LIST_EVENTS: Final = """
SELECT data FROM autumn_events
WHERE customer_pk = %(pk)s
  AND (%(feature)s::text IS NULL OR feature_id = %(feature)s::text)
  AND (%(start)s::timestamptz IS NULL OR ts >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR ts < %(end)s::timestamptz)
  AND (%(after)s::text IS NULL OR seq > (
        SELECT a.seq FROM autumn_events a
        WHERE a.id = %(after)s::text AND a.customer_pk = %(pk)s))
ORDER BY seq
LIMIT %(limit)s
"""

_PUT_IDEMPOTENCY: Final = """
INSERT INTO autumn_idempotency AS i (operation, customer_pk, key, created_at, data)
VALUES (%s, %s, %s, %s, %s::jsonb)
ON CONFLICT (operation, customer_pk, key) DO UPDATE
SET created_at = excluded.created_at, data = excluded.data
WHERE i.created_at <= excluded.created_at - %s::interval
RETURNING 1
"""

_CLAIM_TRIAL: Final = """
WITH s AS (
    INSERT INTO autumn_trial_subject_claims (product_id, customer_pk, entity_key)
    VALUES (%(product)s, %(pk)s, %(entity)s)
    ON CONFLICT DO NOTHING RETURNING 1
), f AS (
    INSERT INTO autumn_trial_fingerprint_claims (product_id, fingerprint)
    SELECT %(product)s, %(fp)s::text WHERE %(fp)s::text IS NOT NULL
    ON CONFLICT DO NOTHING RETURNING 1
)
SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM f)
"""

_TRIAL_CLAIMED: Final = """
SELECT EXISTS (
    SELECT 1 FROM autumn_trial_subject_claims
    WHERE product_id = %(product)s AND customer_pk = %(pk)s AND entity_key = %(entity)s
) OR (%(fp)s::text IS NOT NULL AND EXISTS (
    SELECT 1 FROM autumn_trial_fingerprint_claims
    WHERE product_id = %(product)s AND fingerprint = %(fp)s::text
))
"""

_SAVE_INVOICE: Final = """
INSERT INTO autumn_invoices
    (id, customer_pk, gateway_invoice_id, status, total, currency, created_at, data)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (id) DO UPDATE
SET customer_pk = excluded.customer_pk, gateway_invoice_id = excluded.gateway_invoice_id,
    status = excluded.status, total = excluded.total, currency = excluded.currency,
    created_at = excluded.created_at, data = excluded.data
"""


def _head_text(state: CustomerState) -> str:
    """The head document: every CustomerState field but the children and the version.

    Derived from the class through the converter, so a field added to the model is stored
    without touching this module.
    """
    data = codec.unstructure(attrs.evolve(state, products=(), rows=(), entities=()))
    for name in (*_CHILDREN, "version"):
        data.pop(name, None)
    return codec.dump(data)


_HEAD_FIELDS: Final = tuple(
    f.name for f in attrs.fields(CustomerState) if f.name not in (*_CHILDREN, "version")
)


def _head_changed(before: CustomerState, after: CustomerState) -> bool:
    for name in _HEAD_FIELDS:
        a = getattr(before, name)
        b = getattr(after, name)
        if a is not b and a != b:
            return True
    return False


def _email_lower(state: CustomerState) -> str | None:
    # Lower-cased in Python, never with SQL lower(): the two disagree outside ASCII under some
    # collations, and the in-memory store (the reference) uses str.lower.
    return None if state.email is None else state.email.lower()


def _child_params(
    params: dict[str, Any], before: CustomerState | None, after: CustomerState
) -> None:
    """Fill the JSON parameters of the child CTEs.

    With a ``before`` (what the database holds) only the children that changed are listed in
    ``*_up`` and the removed ones in ``*_del``; without one every child is listed, and ``*_keep``
    names them all (only then: the diff statements do not take it).
    """
    for spec in _CHILD_SPECS:
        p = spec.prefix
        prev: dict[str, tuple[int, Any]] = {}
        if before is not None:
            prev = {getattr(x, spec.key): (i, x) for i, x in enumerate(getattr(before, spec.attr))}
        up: list[dict[str, Any]] = []
        for i, item in enumerate(getattr(after, spec.attr)):
            key = getattr(item, spec.key)
            old = prev.pop(key, None)
            if old is not None and old[0] == i and (old[1] is item or old[1] == item):
                continue
            change = {"id": key, "pos": i, "data": codec.unstructure(item)}
            for name, _ in spec.extra:
                change[name] = getattr(item, name)
            up.append(change)
        params[f"{p}_up"] = codec.dump(up) if up else "[]"
        if before is None:
            params[f"{p}_keep"] = codec.dump(
                [getattr(x, spec.key) for x in getattr(after, spec.attr)]
            )
        params[f"{p}_del"] = codec.dump(list(prev)) if prev else "[]"


# -- the transaction ------------------------------------------------------------------------

#: What a parsed customer was built from, to reuse at the next parse of a newer version: the
#: head document's text and the state its fields were parsed into (None: unknown), and per
#: child table (``_CHILD_SPECS`` order) each document's text -> the record parsed from it.
#: A pure memo of parsing (text -> record), so reusing it can never be wrong; it holds the
#: documents of one version only (rebuilt at each parse), so it is bounded like the entry.
_Parts = tuple[str | None, CustomerState | None, tuple[dict[str, Any], ...]]
#: A cache entry: (seq, version, parsed state, what it was parsed from or None).
_Entry = tuple[int, int, CustomerState, _Parts | None]
_NO_DOCS: Final[dict[str, Any]] = {}
_Held = tuple[int, CustomerState]
#: A statement of a read transaction, to replay: (kind, wire statement, sql, params, result).
_Read = tuple[str, Statement | None, str, Any, Any]


class PostgresTransaction(OutboxTable):
    """One unit of work on one pooled connection; also its own context manager.

    Every statement goes through one ``Wire`` that owns the connection from ``BEGIN`` to
    ``COMMIT``/``ROLLBACK`` (see ``autumn_postgres.wire``)."""

    _conn: Conn
    _wire: Wire

    def __init__(self, store: PostgresStore, write: bool) -> None:
        self._store = store
        self._write = write
        #: Cache entries this transaction produced: published only after COMMIT.
        self._staged: dict[str, _Entry | None] = {}
        #: Customers fetched whole (and, writing, locked) by ``customer_pk`` (pk -> state).
        self._prefetched: dict[str, CustomerState] = {}
        #: pk -> (seq, state) that this transaction knows the database holds (it read, inserted
        #: or saved it): the base a save diffs against.
        self._held: dict[str, _Held] = {}
        #: Read transactions: the first statement and its result (it ran on its own snapshot);
        #: replayed in the snapshot opened for the second statement (see ``_read``).
        self._first: _Read | None = None
        #: Read transactions: a REPEATABLE READ transaction is open (or queued on the wire).
        self._snapshot = False

    append_outbox = _translated(OutboxTable.append_outbox)
    due_outbox = _translated(OutboxTable.due_outbox)
    save_outbox = _translated(OutboxTable.save_outbox)
    list_outbox = _translated(OutboxTable.list_outbox)

    # -- life cycle ---------------------------------------------------------------------------
    def __enter__(self) -> PostgresTransaction:
        self._conn = self._store._acquire()
        self._wire = self._store._wire_on(self._conn)
        if self._write:
            self._wire.begin()  # BEGIN travels with the first statement
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._write:
                self._end_read(exc)
                return
            if exc is not None:
                self._abort()
                return
            try:
                self._wire.commit()  # the queued writes, COMMIT and one Sync
            except CommitInDoubt as doubt:
                self._store._settle(doubt)  # returns only if the transaction committed
            except BaseException as err:
                self._abort()
                raise translate(err) from err
            self._store._publish(self._staged)
        finally:
            self._store._release(self._conn, self._wire)

    def _abort(self) -> None:
        """Roll back whatever state the connection is in; a failed one is discarded on
        release (``Wire.abort`` is the only ROLLBACK: no driver logic runs in between)."""
        with contextlib.suppress(ConnectionLost):
            self._wire.abort()

    def _end_read(self, exc: BaseException | None) -> None:
        """End a read transaction: COMMIT its snapshot if one was opened (a check has none)."""
        wire = self._wire
        if exc is None and self._snapshot:
            try:
                wire.commit(in_doubt=False)
            except BaseException as err:
                self._abort()
                raise translate(err) from err
        elif exc is not None or wire.active:
            self._abort()
        if exc is None:
            self._store._publish(self._staged)

    # -- helpers ------------------------------------------------------------------------------
    def _need_write(self) -> None:
        if not self._write:
            raise StoreError("write attempted in a read transaction")

    def _fire(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        """Queue a statement whose result nobody needs; errors surface by COMMIT at the latest."""
        self._wire.fire(_wire_statement(sql), params)

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        return self._read("one", None, sql, params)

    def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        result: list[Any] = self._read("all", None, sql, params)
        return result

    def _decode(self, kind: str, res: Any) -> Any:
        if kind == "row":
            return self._decode_row(res)
        found = rows(res, self._wire.encoding)
        if kind == "one":
            return found[0] if found else None
        return found

    def _run(self, kind: str, stmt: Statement | None, sql: str, params: Any) -> Any:
        return self._decode(kind, self._wire.one(stmt or _wire_statement(sql), params))

    def _read(self, kind: str, stmt: Statement | None, sql: str, params: Any) -> Any:
        """Run a statement whose result is needed (``kind``: "row" for a customer row, "one",
        "all"), keeping a read transaction on one snapshot.

        A read transaction's first statement runs on its own (autocommit: one statement is one
        snapshot), so a ``check`` is one statement and one round trip. At the second statement
        the transaction opens a snapshot (``BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY``)
        and replays the first statement in it, pipelined with the second; the transaction goes on
        in that snapshot. If the replay returns what the first run returned, everything the
        caller saw is what that snapshot holds; otherwise the data changed in between, and the
        call fails with ``RetryableStoreError`` (nothing was written; the core runs it again).
        """
        if self._write or self._snapshot:
            return self._run(kind, stmt, sql, params)
        first = self._first
        if first is None:
            result = self._run(kind, stmt, sql, params)
            self._first = (kind, stmt, sql, params, result)
            return result
        self._snapshot = True
        kind0, stmt0, sql0, params0, result0 = first
        wire = self._wire
        wire.kept.clear()
        wire.begin(BEGIN_SNAPSHOT)  # BEGIN, the replay and the next statement: one batch
        wire.keep(stmt0 or _wire_statement(sql0), params0)
        result = self._run(kind, stmt, sql, params)
        if not wire.kept:
            raise StoreError("a read transaction's replayed statement returned no result")
        if self._decode(kind0, wire.kept.pop()) != result0:
            raise RetryableStoreError(
                "the rows a read transaction had read changed before its next statement;"
                " nothing changed, run the call again"
            )
        return result

    def _customer_row(self, stmt: Statement, sql: str, params: dict[str, Any]) -> Any:
        """One customer row (pk, seq, version, head, products, rows, entities) or None."""
        return self._read("row", stmt, sql, params)

    def _locked_row(self, by_id: bool, key: str, params: dict[str, Any]) -> Any:
        """Lock a customer row (by id or pk), then read it whole: the read is a second
        statement, issued after the lock statement completed (pipelined: one round trip), so it
        sees the children as committed by the previous lock holder (see the module docstring).
        """
        wire = self._wire
        wire.kept.clear()
        wire.keep(_W_LOCK_BY_ID if by_id else _W_LOCK_BY_PK, {"key": key})
        row = self._decode_row(wire.one(_W_READ_BY_ID if by_id else _W_READ_BY_PK, params))
        res = wire.kept.pop()
        pk = res.get_value(0, 0) if res.ntuples else None
        locked = None if pk is None else bytes(pk).decode()
        if locked is None and row is None:
            return None
        if locked is None or row is None or locked != str(row[0]):
            # The id moved to another customer between the two statements (a rename committed
            # while this one waited for the lock): nothing was read under a lock.
            raise RetryableStoreError(f"customer {key!r} changed while it was being locked")
        return row

    def _decode_row(self, res: Any) -> Any:
        if not res.ntuples:
            return None
        value = res.get_value
        pk, seq, version = value(0, 0), value(0, 1), value(0, 2)
        if pk is None or seq is None or version is None:
            raise StoreError("a customer row came back without its key")
        docs = [value(0, i) for i in range(3, 7)]
        return (
            pk.decode(),
            int(seq),
            int(version),
            *(None if d is None else d.decode() for d in docs),
        )

    def _lookup(self, pk: str) -> _Entry | None:
        if pk in self._staged:
            return self._staged[pk]
        return self._store._cache.get(pk)

    def _stage(self, pk: str, entry: _Entry | None) -> None:
        if self._write:
            self._staged[pk] = entry
        elif entry is not None:
            # A read transaction only ever sees committed rows: publish at once.
            self._store._cache_put(pk, entry)

    def _state(
        self,
        hint: _Entry | None,
        pk: str,
        seq: int,
        version: int,
        head: Any,
        products: Any,
        rows: Any,
        entities: Any,
    ) -> CustomerState:
        """Build (or reuse) the parsed aggregate for one customer row.

        The documents come as text (head; each child table's documents one per line). A stale
        ``hint`` (another process saved the customer since) still says what the documents it was
        parsed from were: only the documents whose text is new are parsed, the records of the
        others are shared (records are immutable).
        """
        if hint is not None and hint[0] == seq and hint[1] == version:
            self._held[pk] = (seq, hint[2])
            return hint[2]
        if head is None or products is None or rows is None or entities is None:
            raise StoreError(f"customer {pk!r} changed while it was being read")
        prev = hint[3] if hint is not None else None
        memos: list[dict[str, Any]] = []
        children: list[tuple[Any, ...]] = []
        for i, (spec, text) in enumerate(
            zip(_CHILD_SPECS, (products, rows, entities), strict=True)
        ):
            known = prev[2][i] if prev is not None else _NO_DOCS
            memo: dict[str, Any] = {}
            items: list[Any] = []
            if text:
                for doc in text.split(_DOC_SEP):
                    record = known.get(doc)
                    if record is None:
                        record = codec.structure(json.loads(doc), spec.cls)
                    memo[doc] = record
                    items.append(record)
            memos.append(memo)
            children.append(tuple(items))
        if prev is not None and prev[1] is not None and prev[0] == head:
            source = prev[1]
        else:
            data = json.loads(head)
            data["version"] = version
            source = codec.structure(data, CustomerState)
        state = model.replace(
            source,
            products=children[0],
            rows=children[1],
            entities=children[2],
            version=version,
        )
        self._held[pk] = (seq, state)
        self._stage(pk, (seq, version, state, (head, source, tuple(memos))))
        return state

    def _hint_params(self, key: str, hint: _Entry | None, hint_pk: str | None) -> dict[str, Any]:
        if hint is None:
            return {"key": key, "hpk": None, "hseq": None, "hver": None}
        return {"key": key, "hpk": hint_pk, "hseq": hint[0], "hver": hint[1]}

    # -- catalog versions -----------------------------------------------------------------------
    @_translated
    def load_product_versions(self) -> list[ProductVersionRecord]:
        rows = self._all("SELECT data FROM autumn_product_versions ORDER BY product_id, version")
        return [codec.structure(_doc(r[0]), ProductVersionRecord) for r in rows]

    @_translated
    def save_product_version(self, record: ProductVersionRecord) -> None:
        self._need_write()
        self._fire(
            "INSERT INTO autumn_product_versions (product_id, version, created_at, data)"
            " VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (product_id, version) DO UPDATE"
            " SET created_at = excluded.created_at, data = excluded.data",
            (record.product_id, record.version, record.created_at, codec.encode(record)),
        )

    @_translated
    def product_version_in_use(self, product_id: str, version: int) -> bool:
        row = self._one(
            "SELECT EXISTS (SELECT 1 FROM autumn_customer_products"
            " WHERE product_id = %s AND version = %s)",
            (product_id, version),
        )
        return row is not None and row[0] == "t"

    # -- customers ------------------------------------------------------------------------------
    @_translated
    def customer_pk(self, customer_id: str) -> str | None:
        """The pk for an id; also fetches the whole customer in the same statement.

        The next step of every call is loading that customer, so a read transaction reads it
        now (a ``check`` is one round trip) and a write transaction locks it now (the lock a
        ``load_customer(for_update=True)`` would take next; customer row first either way).
        """
        hint_pk = self._store._ids.get(customer_id)
        hint = self._lookup(hint_pk) if hint_pk is not None else None
        params = self._hint_params(customer_id, hint, hint_pk)
        if self._write:
            row = self._locked_row(True, customer_id, params)
        else:
            row = self._customer_row(_W_READ_BY_ID, _READ_BY_ID, params)
        if row is None:
            return None
        pk = str(row[0])
        self._prefetched[pk] = self._state(hint if hint_pk == pk else None, *row)
        self._store._remember_id(customer_id, pk)
        return pk

    @_translated
    def load_customer(self, pk: str, *, for_update: bool = False) -> CustomerState | None:
        state = self._prefetched.pop(pk, None)
        if state is not None:
            return state
        hint = self._lookup(pk)
        params = self._hint_params(pk, hint, pk)
        if for_update and self._write:
            row = self._locked_row(False, pk, params)
        else:
            row = self._customer_row(_W_READ_BY_PK, _READ_BY_PK, params)
        return None if row is None else self._state(hint, *row)

    def _states(self, rows: list[Any]) -> list[CustomerState]:
        return [
            self._state(self._lookup(str(r[0])), str(r[0]), int(r[1]), int(r[2]), *r[3:])
            for r in rows
        ]

    @_translated
    def customers_by_email(self, email: str) -> list[CustomerState]:
        rows = self._all(
            f"SELECT {_FULL} FROM autumn_customers c WHERE c.email_lower = %s"
            ' ORDER BY c.created_at, c.id IS NULL, c.id COLLATE "C", c.pk',
            (email.lower(),),
        )
        return self._states(rows)

    @_translated
    def insert_customer(self, state: CustomerState) -> None:
        self._need_write()
        params: dict[str, Any] = {
            "pk": state.pk,
            "id": state.id,
            "email_lower": _email_lower(state),
            "created_at": state.created_at,
            "due": next_due_at(state),
            "version": 1,
            "head": _head_text(state),
        }
        _child_params(params, None, state)
        row = self._one(_INSERT_CUSTOMER, params)
        if row is None:
            raise UniqueViolation(
                f"customer pk {state.pk!r}, id {state.id!r} or id-less email {state.email!r}"
                " is taken"
            )
        seq = int(row[0])
        inserted = attrs.evolve(state, version=1)
        self._held[state.pk] = (seq, inserted)
        self._stage(state.pk, (seq, 1, inserted, None))
        if state.id is not None:
            self._store._remember_id(state.id, state.pk)

    @_translated
    def save_customer(self, before: CustomerState, after: CustomerState) -> None:
        """Write ``after``. The diff is taken against what *this transaction* knows the database
        holds (normally ``before`` itself); a customer it never read is written whole, so a
        stale ``before`` can never leave a child of another state behind."""
        self._need_write()
        held = self._held.get(after.pk)
        base = held[1] if held is not None else None
        params: dict[str, Any] = {
            "pk": after.pk,
            "id": after.id,
            "email_lower": _email_lower(after),
            "due": next_due_at(after),
        }
        _child_params(params, base, after)
        if base is None:
            sql = _REPLACE_CUSTOMER
            params["head"] = _head_text(after)
            identity_changed = True
        else:
            sql = _update_customer(
                tuple(
                    params[f"{c.prefix}_{w}"] != "[]" for c in _CHILD_SPECS for w in ("up", "del")
                )
            )
            params["version"] = base.version + 1
            params["base_version"] = base.version
            params["head"] = _head_text(after) if _head_changed(base, after) else None
            params["lost"] = f"customer {after.pk!r} was changed by another transaction"
            identity_changed = (base.id, _email_lower(base)) != (after.id, _email_lower(after))
        if identity_changed:
            # A new id or email may be taken: find out now (the caller turns it into a Conflict)
            # and keep the transaction usable.
            self._fire("SAVEPOINT autumn_identity")
            try:
                self._one(sql, params)
            except ServerError as exc:
                if exc.sqlstate != "23505":
                    raise
                self._wire.sync()  # leave the skipped-statements state of the pipeline
                self._fire("ROLLBACK TO SAVEPOINT autumn_identity")
                raise translate(exc) from exc
            self._fire("RELEASE SAVEPOINT autumn_identity")
        else:
            self._wire.fire(_wire_statement(sql), params)
        if held is not None and base is not None:
            saved = attrs.evolve(after, version=base.version + 1)
            self._held[after.pk] = (held[0], saved)
            # What ``base`` was parsed from still says how its documents parse; the head text
            # only while the head was not rewritten (then the row keeps exactly that text).
            known = self._lookup(after.pk)
            parts = known[3] if known is not None and known[2] is base else None
            if parts is not None and params["head"] is not None:
                parts = (None, None, parts[2])
            self._stage(after.pk, (held[0], saved.version, saved, parts))
        else:
            self._stage(after.pk, None)
        if after.id is not None:
            self._store._remember_id(after.id, after.pk)

    @_translated
    def delete_customer(self, pk: str) -> None:
        self._need_write()
        self._fire(_DELETE_CUSTOMER, {"pk": pk})
        self._stage(pk, None)
        self._prefetched.pop(pk, None)
        self._held.pop(pk, None)

    @_translated
    def list_customers(
        self, *, limit: int, starting_after: str | None, email: str | None
    ) -> list[CustomerState]:
        rows = self._all(
            f"""
            SELECT {_FULL} FROM autumn_customers c
            WHERE (%(email)s::text IS NULL OR c.email_lower = %(email)s::text)
              AND (%(after)s::text IS NULL
                   OR NOT EXISTS (SELECT 1 FROM autumn_customers a WHERE a.pk = %(after)s::text)
                   OR (c.created_at, c.id IS NULL, COALESCE(c.id, '') COLLATE "C", c.pk) > (
                       SELECT a.created_at, a.id IS NULL, COALESCE(a.id, '') COLLATE "C", a.pk
                       FROM autumn_customers a WHERE a.pk = %(after)s::text))
            ORDER BY c.created_at, c.id IS NULL, c.id COLLATE "C", c.pk
            LIMIT %(limit)s
            """,
            {
                "email": None if email is None else email.lower(),
                "after": starting_after,
                "limit": limit,
            },
        )
        return self._states(rows)

    @_translated
    def due_customer_pks(self, now: datetime, limit: int | None) -> list[str]:
        rows = self._all(
            "SELECT pk FROM autumn_customers WHERE next_due_at <= %s"
            " ORDER BY next_due_at, pk LIMIT %s",
            (now, limit),
        )
        return [str(r[0]) for r in rows]

    # -- events -------------------------------------------------------------------------------
    @_translated
    def append_events(self, events: Sequence[EventRecord]) -> None:
        self._need_write()
        if not events:
            return
        if len(events) == 1:
            e = events[0]
            params = {
                "id": e.id,
                "pk": e.customer_pk,
                "entity": e.entity_id,
                "feature": e.feature_id,
                "name": e.event_name,
                "value": e.value,
                "ts": e.timestamp,
                "created": e.created_at,
                "data": codec.encode(e),
            }
            self._wire.fire(_W_EVENT, params)
            return
        self._wire.fire(_W_EVENTS, {"events": codec.encode(list(events))})

    @_translated
    def list_events(
        self,
        customer_pk: str,
        *,
        feature_id: str | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        starting_after: str | None,
    ) -> list[EventRecord]:
        rows = self._all(
            _LIST_EVENTS,
            {
                "pk": customer_pk,
                "feature": feature_id,
                "start": start,
                "end": end,
                "after": starting_after,
                "limit": limit,
            },
        )
        return [codec.structure(_doc(r[0]), EventRecord) for r in rows]

    # -- idempotency --------------------------------------------------------------------------
    @_translated
    def get_idempotency(
        self, operation: str, customer_pk: str, key: str
    ) -> IdempotencyRecord | None:
        row = self._one(
            "SELECT data FROM autumn_idempotency"
            " WHERE operation = %s AND customer_pk = %s AND key = %s",
            (operation, customer_pk, key),
        )
        return None if row is None else codec.structure(_doc(row[0]), IdempotencyRecord)

    @_translated
    def put_idempotency(self, record: IdempotencyRecord) -> None:
        self._need_write()
        row = self._one(
            _PUT_IDEMPOTENCY,
            (
                record.operation,
                record.customer_pk,
                record.key,
                record.created_at,
                codec.encode(record),
                IDEMPOTENCY_TTL,
            ),
        )
        if row is None:
            raise UniqueViolation(f"idempotency key {record.key!r} is in use")

    # -- unique claims ------------------------------------------------------------------------
    @_translated
    def trial_claimed(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        row = self._one(
            _TRIAL_CLAIMED,
            {
                "product": product_id,
                "pk": customer_pk,
                "entity": entity_id or "",
                "fp": fingerprint,
            },
        )
        return row is not None and row[0] == "t"

    @_translated
    def claim_trial(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        self._need_write()
        params = {
            "product": product_id,
            "pk": customer_pk,
            "entity": entity_id or "",
            "fp": fingerprint,
        }
        subject, by_fp = (int(v or 0) for v in self._one(_CLAIM_TRIAL, params))
        if subject and (fingerprint is None or by_fp):
            return True
        # One of the two was claimed already: undo the half this statement inserted (no other
        # transaction can see it yet), so a refused claim inserts nothing.
        if subject:
            self._fire(
                "DELETE FROM autumn_trial_subject_claims"
                " WHERE product_id = %(product)s AND customer_pk = %(pk)s"
                " AND entity_key = %(entity)s",
                params,
            )
        if by_fp:
            self._fire(
                "DELETE FROM autumn_trial_fingerprint_claims"
                " WHERE product_id = %(product)s AND fingerprint = %(fp)s",
                params,
            )
        return False

    @_translated
    def claim_renewal(self, cp_instance_id: str, period_start: datetime) -> bool:
        self._need_write()
        row = self._one(
            "INSERT INTO autumn_renewal_markers (cp_instance_id, period_start) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            (cp_instance_id, period_start),
        )
        return row is not None

    @_translated
    def claim_gateway_event(self, event_id: str) -> bool:
        self._need_write()
        row = self._one(
            "INSERT INTO autumn_gateway_events (event_id) VALUES (%s)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            (event_id,),
        )
        return row is not None

    # -- invoices -----------------------------------------------------------------------------
    @_translated
    def save_invoice(self, invoice: InvoiceRecord) -> None:
        self._need_write()
        self._fire(
            _SAVE_INVOICE,
            (
                invoice.id,
                invoice.customer_pk,
                invoice.gateway_invoice_id,
                invoice.status,
                invoice.total,
                invoice.currency,
                invoice.created_at,
                codec.encode(invoice),
            ),
        )

    @_translated
    def get_invoice(self, invoice_id: str) -> InvoiceRecord | None:
        row = self._one("SELECT data FROM autumn_invoices WHERE id = %s", (invoice_id,))
        return None if row is None else codec.structure(_doc(row[0]), InvoiceRecord)

    @_translated
    def find_invoice_by_gateway_id(self, gateway_invoice_id: str) -> InvoiceRecord | None:
        row = self._one(
            "SELECT data FROM autumn_invoices WHERE gateway_invoice_id = %s ORDER BY seq LIMIT 1",
            (gateway_invoice_id,),
        )
        return None if row is None else codec.structure(_doc(row[0]), InvoiceRecord)

    @_translated
    def list_invoices(self, customer_pk: str) -> list[InvoiceRecord]:
        rows = self._all(
            "SELECT data FROM autumn_invoices WHERE customer_pk = %s ORDER BY seq",
            (customer_pk,),
        )
        return [codec.structure(_doc(r[0]), InvoiceRecord) for r in rows]

    # -- pending ------------------------------------------------------------------------------
    @_translated
    def put_pending(self, record: PendingRecord) -> None:
        self._need_write()
        self._fire(
            "INSERT INTO autumn_pending (key, customer_pk, kind, created_at, data)"
            " VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (key) DO UPDATE"
            " SET customer_pk = excluded.customer_pk, kind = excluded.kind,"
            " created_at = excluded.created_at, data = excluded.data",
            (record.key, record.customer_pk, record.kind, record.created_at, codec.encode(record)),
        )

    @_translated
    def get_pending(self, key: str) -> PendingRecord | None:
        row = self._one("SELECT data FROM autumn_pending WHERE key = %s", (key,))
        return None if row is None else codec.structure(_doc(row[0]), PendingRecord)

    @_translated
    def delete_pending(self, key: str) -> None:
        self._need_write()
        self._fire("DELETE FROM autumn_pending WHERE key = %s", (key,))

    @_translated
    def list_pending(self, kind: str) -> list[PendingRecord]:
        rows = self._all("SELECT data FROM autumn_pending WHERE kind = %s ORDER BY key", (kind,))
        return [codec.structure(_doc(r[0]), PendingRecord) for r in rows]


# -- the store ------------------------------------------------------------------------------


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
        #: pk -> (seq, version, state) of committed states. Read without a lock (dict reads are
        #: atomic); written under ``_cache_lock``.
        self._cache: dict[str, _Entry] = {}
        self._cache_lock = threading.Lock()
        #: customer id -> pk, a hint for the cache (a wrong hint only costs a cache miss).
        self._ids: dict[str, str] = {}
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
        self._cache.clear()
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

    # -- the parse cache ----------------------------------------------------------------------
    def _cache_put(self, pk: str, entry: _Entry) -> None:
        if not self._cache_size:
            return
        with self._cache_lock:
            cache = self._cache
            old = cache.get(pk)
            # Never replace a newer entry with an older one (a slow reader racing a writer).
            if old is not None and old[0] == entry[0] and old[1] > entry[1]:
                return
            cache.pop(pk, None)
            cache[pk] = entry
            if len(cache) > self._cache_size:
                for stale in list(cache)[: max(1, len(cache) // 4)]:
                    del cache[stale]

    def _remember_id(self, customer_id: str, pk: str) -> None:
        """Note which pk an id belongs to (bounded like the cache: a hint, safe to forget)."""
        ids = self._ids
        if len(ids) >= max(1, 2 * self._cache_size):
            ids.clear()
        ids[customer_id] = pk

    def _publish(self, staged: dict[str, _Entry | None]) -> None:
        for pk, entry in staged.items():
            if entry is None:
                with self._cache_lock:
                    self._cache.pop(pk, None)
            else:
                self._cache_put(pk, entry)

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
