"""SqliteStore: the embedded default store, durable and safe across threads and processes.

How it keeps the Store port's promises with nothing but the standard library's ``sqlite3``:

- **One transaction per call.** ``transaction()`` hands out a ``SqliteTransaction`` that is its
  own context manager: ``BEGIN IMMEDIATE`` for writes (the write lock is taken up front, so two
  processes never both read a balance and then both write it), plain ``BEGIN`` for reads (WAL
  gives the reader one consistent snapshot without blocking writers). Leaving the block commits;
  an exception rolls back and propagates unchanged.
- **Bounded lock waits.** SQLite's own ``busy_timeout`` is kept small; around it the store
  retries ``BEGIN IMMEDIATE`` with jittered back-off until ``lock_timeout`` has passed, then
  raises ``StoreError`` having changed nothing. Threads of one process queue on an in-process
  lock first, so they do not spin against each other through the file lock.
- **Errors.** ``translate`` is the one place where ``sqlite3`` exceptions become
  ``UniqueViolation`` / ``StoreError``; every statement goes through the few helpers that call it.
- **Connections.** One per thread (``threading.local``), re-made after ``fork``; ``:memory:``
  databases use one connection guarded by a lock, because each ``:memory:`` connection would be a
  different database. Forking while a transaction is open in another thread is not supported
  (SQLite's lock bookkeeping is copied into the child, which then cannot take the write lock and
  gets ``StoreError`` after ``lock_timeout``); fork while idle, or use the ``spawn`` start method.
- **Speed.** A ``CustomerState`` is parsed once per committed version: loads first read the
  customer's (seq, version) and reuse the cached immutable object when it matches. Saves write
  only the child rows that changed, so a ``track`` is one row update, one version bump and one
  event insert.
"""

from __future__ import annotations

import contextlib
import operator
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import cattrs

from autumn_core.errors import InvalidRequest, StoreError, UniqueViolation
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
    replace,
)
from autumn_core.ports import StoreCapabilities
from autumn_sqlite import codec, schema
from autumn_sqlite.outbox import OutboxTable

T = TypeVar("T")

IDEMPOTENCY_TTL = timedelta(hours=24)
_IDEMPOTENCY_TTL_US: Final = IDEMPOTENCY_TTL // timedelta(microseconds=1)

SYNCHRONOUS_MODES: Final = ("OFF", "NORMAL", "FULL", "EXTRA")

#: SQLite's own wait per attempt. Small, so that our jittered retry (fairer between processes
#: than SQLite's fixed polling) decides most of the waiting and the overall bound is ours.
BUSY_TIMEOUT_MS: Final = 20
#: Default bound on waiting for the write lock before a call fails with ``StoreError``.
DEFAULT_LOCK_TIMEOUT: Final = 5.0
#: Default number of parsed customers kept per store.
DEFAULT_CACHE_SIZE: Final = 10_000

_BUSY_CODES: Final = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_UNIQUE_NAMES: Final = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")

#: The head of the aggregate: every CustomerState field but the children and the version.
#: Derived from the class, so a field added to the model is stored without touching this file.
_CHILDREN: Final = ("products", "rows", "entities")
_HEAD_FIELDS: Final = tuple(
    f.name for f in attrs.fields(CustomerState) if f.name not in (*_CHILDREN, "version")
)

#: Marks a customer deleted in a transaction's overlay.
_DELETED: Final[Any] = object()
_MISSING: Final[Any] = object()

#: Connections inherited through ``fork``: never used or closed in the child (closing them
#: could touch the parent's locks), only kept alive.
_INHERITED: list[sqlite3.Connection] = []

#: Bumped in a child process right after ``fork``: connections and locks of an older generation
#: were inherited and must not be used (a lock held by another thread at fork time would never
#: be released in the child). Compared on every call, so it must be cheaper than ``getpid``.
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the one place driver errors are translated ----------------------------------------------


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def translate(exc: BaseException) -> StoreError:
    """Map a driver (or decoding) exception to the core's error, keeping its message.

    ``UniqueViolation`` for a unique or primary-key constraint, ``StoreError`` for everything
    else; a busy database is marked ``retryable`` (nothing happened, trying again may work).
    """
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError):
        name = getattr(exc, "sqlite_errorname", "")
        if name in _UNIQUE_NAMES or "UNIQUE constraint" in str(exc):
            return UniqueViolation(f"a uniqueness constraint refused the write ({exc})")
        return StoreError(f"an integrity constraint refused the write ({exc})")
    if isinstance(exc, sqlite3.Error):
        if _is_busy(exc):
            err = StoreError(f"the SQLite database is locked by another writer ({exc})")
            err.retryable = True
            return err
        return StoreError(f"SQLite failed: {exc}")
    if isinstance(exc, ValueError | TypeError | KeyError | cattrs.BaseValidationError):
        return StoreError(f"stored data could not be read back ({exc!r})")
    return StoreError(f"the store failed: {exc!r}")


# -- the transaction ----------------------------------------------------------------------


@attrs.frozen
class _Child:
    """How one tuple of the aggregate maps to its child table."""

    attr: str
    table: str
    key: str
    cls: type[Any]
    #: Extra columns filled from the record, for SQL that must see them.
    extra: tuple[str, ...] = ()


_PRODUCTS = _Child(
    "products", "customer_products", "instance_id", ProductState, ("product_id", "version")
)
_ROWS = _Child("rows", "balance_rows", "id", RowState)
_ENTITIES = _Child("entities", "entities", "id", EntityState)
_CHILD_SPECS: Final = (_PRODUCTS, _ROWS, _ENTITIES)


def _sql_for(spec: _Child) -> tuple[str, str, str, str, str]:
    """INSERT, UPDATE data, UPDATE pos, DELETE one, DELETE all — for one child table."""
    cols = ", ".join(("customer_pk", spec.key, "pos", *spec.extra, "data"))
    marks = ", ".join("?" * (4 + len(spec.extra)))
    sets = ", ".join(f"{c} = ?" for c in ("pos", *spec.extra, "data"))
    where = f"WHERE customer_pk = ? AND {spec.key} = ?"
    return (
        f"INSERT INTO {spec.table} ({cols}) VALUES ({marks})",
        f"UPDATE {spec.table} SET {sets} {where}",
        f"UPDATE {spec.table} SET pos = ? {where}",
        f"DELETE FROM {spec.table} {where}",
        f"DELETE FROM {spec.table} WHERE customer_pk = ?",
    )


_CHILD_SQL: Final = {spec.attr: _sql_for(spec) for spec in _CHILD_SPECS}

_INSERT_EVENT: Final = (
    "INSERT INTO events (id, customer_pk, feature_id, ts_us, data) VALUES (?, ?, ?, ?, ?)"
)

#: The port's customer order: created_at, then id (id-less last), then pk; ids compare by code
#: point (SQLite's BINARY collation on UTF-8), as in the other stores.
_CUSTOMER_ORDER: Final = "ORDER BY created_us, id IS NULL, id, pk"

_LOAD_CHILDREN: Final = (
    "SELECT 0, pos, data FROM customer_products WHERE customer_pk = ?1"
    " UNION ALL SELECT 1, pos, data FROM balance_rows WHERE customer_pk = ?1"
    " UNION ALL SELECT 2, pos, data FROM entities WHERE customer_pk = ?1"
    " ORDER BY 1, 2"
)


_head: Final = operator.attrgetter(*_HEAD_FIELDS)


def _due_micros(state: CustomerState) -> int | None:
    due = state.due_at  # derived once per state: the loaded one already knows it
    return None if due is None else codec.to_micros(due)


class SqliteTransaction(OutboxTable):
    """One unit of work on one connection; also the context manager that begins and ends it."""

    def __init__(self, store: SqliteStore, conn: sqlite3.Connection, write: bool) -> None:
        self._store = store
        self._conn = conn
        self._write = write
        #: pk -> the state this transaction wrote (or _DELETED), with its seq; published to the
        #: store's cache after COMMIT, dropped on rollback.
        self._overlay: dict[str, tuple[int, Any]] = {}
        #: pk -> (seq, version) read by a query earlier in this transaction (same snapshot), so
        #: that ``customer_pk`` followed by ``load_customer`` costs one query, not two.
        self._seen: dict[str, tuple[int, int]] = {}
        self._active = False

    # -- context manager --------------------------------------------------------------------
    def __enter__(self) -> SqliteTransaction:
        self._store._begin(self._conn, self._write)
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._active = False
        if exc_type is None:
            self._store._commit(self._conn, self._write)
            if self._overlay:
                self._store._publish(self._overlay)
        else:
            self._store._rollback(self._conn, self._write)

    # -- statement helpers (every SQL statement goes through these) -------------------------
    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if not self._active:
            raise StoreError("the transaction is not open")
        try:
            return self._conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if not self._active:
            raise StoreError("the transaction is not open")
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _decode(self, text: str, cls: type[T]) -> T:
        try:
            return codec.decode(text, cls)
        except Exception as exc:
            raise translate(exc) from exc

    def _need_write(self) -> None:
        if not self._write:
            raise StoreError("write attempted in a read transaction")
        if not self._active:
            raise StoreError("the transaction is not open")

    # -- catalog versions -------------------------------------------------------------------
    def load_product_versions(self) -> list[ProductVersionRecord]:
        rows = self._all("SELECT data FROM product_versions ORDER BY product_id, version")
        return [self._decode(r[0], ProductVersionRecord) for r in rows]

    def save_product_version(self, record: ProductVersionRecord) -> None:
        self._need_write()
        self._exec(
            "INSERT INTO product_versions (product_id, version, data) VALUES (?, ?, ?)"
            " ON CONFLICT (product_id, version) DO UPDATE SET data = excluded.data",
            (record.product_id, record.version, codec.encode(record)),
        )

    def product_version_in_use(self, product_id: str, version: int) -> bool:
        row = self._one(
            "SELECT 1 FROM customer_products WHERE product_id = ? AND version = ? LIMIT 1",
            (product_id, version),
        )
        return row is not None

    # -- customers: reads -------------------------------------------------------------------
    def customer_pk(self, customer_id: str) -> str | None:
        row = self._one("SELECT pk, seq, version FROM customers WHERE id = ?", (customer_id,))
        if row is None:
            return None
        pk: str = row[0]
        self._seen[pk] = (row[1], row[2])
        return pk

    def load_customer(self, pk: str, *, for_update: bool = False) -> CustomerState | None:
        # ``for_update`` needs nothing more: a write transaction holds the database write lock.
        written = self._overlay.get(pk)
        if written is not None:
            state: CustomerState | None = None if written[1] is _DELETED else written[1]
            return state
        seen = self._seen.get(pk)
        if seen is None:
            row = self._one("SELECT seq, version FROM customers WHERE pk = ?", (pk,))
            if row is None:
                return None
            seen = self._seen[pk] = (row[0], row[1])
        return self._cached_or_read(pk, seen[0], seen[1])

    def _cached_or_read(self, pk: str, seq: int, version: int) -> CustomerState | None:
        entry = self._store._cache.get(pk)
        if entry is not None and entry[0] == seq and entry[1].version == version:
            return entry[1]
        return self._read_customer(pk)

    def _read_customer(self, pk: str) -> CustomerState | None:
        """Parse the customer from its rows and remember it (this is committed data: any
        customer this transaction wrote is served from the overlay instead)."""
        row = self._one("SELECT seq, version, data FROM customers WHERE pk = ?", (pk,))
        if row is None:
            return None
        seq, version, data = row
        children = self._all(_LOAD_CHILDREN, (pk,))
        try:
            head = codec.load(data)
            lists: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
            for kind, _pos, child in children:
                lists[kind].append(codec.load(child))
            head["products"], head["rows"], head["entities"] = lists
            head["version"] = version
            state = codec.structure(head, CustomerState)
        except Exception as exc:
            raise translate(exc) from exc
        self._store._cache_put(pk, seq, state)
        self._seen[pk] = (seq, version)
        return state

    def _states(self, rows: list[Any]) -> list[CustomerState]:
        """Customers from (pk, seq, version) rows, in order, through the overlay and cache."""
        out = []
        for pk, seq, version in rows:
            self._seen[pk] = (seq, version)
            written = self._overlay.get(pk)
            if written is not None:
                state = None if written[1] is _DELETED else written[1]
            else:
                state = self._cached_or_read(pk, seq, version)
            if state is not None:
                out.append(state)
        return out

    def customers_by_email(self, email: str) -> list[CustomerState]:
        rows = self._all(
            f"SELECT pk, seq, version FROM customers WHERE email_lower = ? {_CUSTOMER_ORDER}",
            (email.lower(),),
        )
        return self._states(rows)

    def list_customers(
        self, *, limit: int, starting_after: str | None, email: str | None
    ) -> list[CustomerState]:
        sql = "SELECT pk, seq, version FROM customers"
        where: list[str] = []
        params: list[Any] = []
        if email is not None:
            where.append("email_lower = ?")
            params.append(email.lower())
        if starting_after is not None:
            # After that customer's place in the full order, whether or not it matches the
            # email filter; an unknown pk starts from the beginning.
            cursor = self._one(
                "SELECT created_us, id IS NULL, coalesce(id, ''), pk FROM customers WHERE pk = ?",
                (starting_after,),
            )
            if cursor is not None:
                # Spelled so that the index on the order key serves it as a range.
                where.append(
                    "created_us >= ? AND (created_us > ? OR (id IS NULL, coalesce(id, ''), pk)"
                    " > (?, ?, ?))"
                )
                params.extend((cursor[0], *cursor))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" {_CUSTOMER_ORDER} LIMIT ?"
        params.append(limit)
        return self._states(self._all(sql, params))

    def due_customer_pks(self, now: datetime, limit: int | None) -> list[str]:
        rows = self._all(
            "SELECT pk FROM customers WHERE next_due_us <= ? ORDER BY next_due_us, seq LIMIT ?",
            (codec.to_micros(now), -1 if limit is None else limit),
        )
        return [r[0] for r in rows]

    # -- customers: writes ------------------------------------------------------------------
    def insert_customer(self, state: CustomerState) -> None:
        self._need_write()
        stored = attrs.evolve(state, version=1)
        # Everything is encoded before the first statement, so a refused call writes nothing.
        head = self._head_params(stored, _due_micros(stored))
        children = self._all_child_ops(stored, None)
        # The customer row first: it carries every uniqueness rule, so a refused insert has
        # written nothing and the transaction stays usable.
        cur = self._exec(
            "INSERT INTO customers (id, email_lower, created_us, next_due_us, data, pk, version)"
            " VALUES (?, ?, ?, ?, ?, ?, 1)",
            head,
        )
        seq = cur.lastrowid
        assert seq is not None
        self._run_ops(children)
        self._overlay[stored.pk] = (seq, stored)

    def save_customer(self, before: CustomerState, after: CustomerState) -> None:
        """Write the difference between what the database holds and ``after``.

        What it holds is what this transaction last wrote for the customer, else ``before``
        when ``before`` is at the stored version, else unknown (a stale ``before``): then the
        head and every child row are rewritten. A track is one version bump and one row update.
        """
        self._need_write()
        pk = after.pk
        written = self._overlay.get(pk)
        known: CustomerState | None
        if written is not None and written[1] is not _DELETED:
            known = written[1]
            seq, stored = written[0], known.version
        else:
            seen = self._seen.get(pk)
            if seen is None:
                row = self._one("SELECT seq, version FROM customers WHERE pk = ?", (pk,))
                if row is None:
                    raise StoreError(f"cannot save customer {pk!r}: it does not exist")
                seen = (row[0], row[1])
            seq, stored = seen
            known = before if stored == before.version else None
        # The write lock is held since BEGIN IMMEDIATE and (seq, stored) were read in this
        # transaction (or written by it), so the new version is known without RETURNING; the
        # ``version = ?`` guard turns any slip in that bookkeeping into an error, never a
        # silent overwrite.
        # Encode first (see insert_customer), then write: the head row, then the children.
        due_us = _due_micros(after)
        if known is None or (known is not after and _head(known) != _head(after)):
            sql = (
                "UPDATE customers SET id = ?, email_lower = ?, created_us = ?, next_due_us = ?,"
                " data = ?, version = version + 1 WHERE pk = ? AND version = ?"
            )
            params: Sequence[Any] = (*self._head_params(after, due_us), stored)
        elif due_us == _due_micros(known):
            # The common case (a track): only the version moves, so no index is touched.
            sql = "UPDATE customers SET version = version + 1 WHERE pk = ? AND version = ?"
            params = (pk, stored)
        else:
            sql = (
                "UPDATE customers SET next_due_us = ?, version = version + 1"
                " WHERE pk = ? AND version = ?"
            )
            params = (due_us, pk, stored)
        children = self._all_child_ops(after, known)
        if self._exec(sql, params).rowcount != 1:
            raise StoreError(f"cannot save customer {pk!r}: it does not exist at version {stored}")
        self._run_ops(children)
        self._overlay[pk] = (seq, replace(after, version=stored + 1))
        self._seen.pop(pk, None)

    @staticmethod
    def _head_params(state: CustomerState, due_us: int | None) -> tuple[Any, ...]:
        """(id, email_lower, created_us, next_due_us, data, pk) of the customers row."""
        data = codec.unstructure(state)
        for name in (*_CHILDREN, "version"):
            del data[name]
        return (
            state.id,
            None if state.email is None else state.email.lower(),
            codec.to_micros(state.created_at),
            due_us,
            codec.dump(data),
            state.pk,
        )

    def _run_ops(self, ops: list[tuple[str, Any, bool]]) -> None:
        for sql, params, many in ops:
            if many:
                self._many(sql, params)
            else:
                self._exec(sql, params)

    def _all_child_ops(
        self, after: CustomerState, known: CustomerState | None
    ) -> list[tuple[str, Any, bool]]:
        ops: list[tuple[str, Any, bool]] = []
        for spec in _CHILD_SPECS:
            old = None if known is None else getattr(known, spec.attr)
            self._child_ops(ops, spec, after.pk, old, getattr(after, spec.attr))
        return ops

    @staticmethod
    def _child_ops(
        ops: list[tuple[str, Any, bool]],
        spec: _Child,
        pk: str,
        before: tuple[Any, ...] | None,
        after: tuple[Any, ...],
    ) -> None:
        """Append the statements turning ``before`` into ``after`` for one child table
        (``before=None``: unknown, so replace them all). Unchanged records are recognised by
        identity first, then by equality; a moved one only gets its position updated."""
        if before is after:
            return
        insert, update, update_pos, delete_one, delete_all = _CHILD_SQL[spec.attr]
        key, extra = spec.key, spec.extra
        encode = codec.encode_record
        if before is None:
            ops.append((delete_all, (pk,), False))
            rows = [
                (pk, getattr(item, key), pos, *[getattr(item, c) for c in extra], encode(item))
                for pos, item in enumerate(after)
            ]
            if rows:
                ops.append((insert, rows, True))
            return
        old = {getattr(item, key): (pos, item) for pos, item in enumerate(before)}
        for pos, item in enumerate(after):
            k = getattr(item, key)
            prev = old.pop(k, None)
            if prev is None:
                ops.append(
                    (insert, (pk, k, pos, *[getattr(item, c) for c in extra], encode(item)), False)
                )
            elif prev[1] is not item and prev[1] != item:
                ops.append(
                    (update, (pos, *[getattr(item, c) for c in extra], encode(item), pk, k), False)
                )
            elif prev[0] != pos:
                ops.append((update_pos, (pos, pk, k), False))
        for k in old:
            ops.append((delete_one, (pk, k), False))

    def delete_customer(self, pk: str) -> None:
        self._need_write()
        # Products, rows and entities follow by ON DELETE CASCADE; fingerprint trial claims stay.
        self._exec("DELETE FROM customers WHERE pk = ?", (pk,))
        for table in ("events", "idempotency", "trial_subject_claims", "invoices"):
            self._exec(f"DELETE FROM {table} WHERE customer_pk = ?", (pk,))
        self._overlay[pk] = (0, _DELETED)
        self._seen.pop(pk, None)

    # -- events -----------------------------------------------------------------------------
    def append_events(self, events: Sequence[EventRecord]) -> None:
        self._need_write()
        if len(events) == 1:
            e = events[0]
            self._exec(
                _INSERT_EVENT,
                (
                    e.id,
                    e.customer_pk,
                    e.feature_id,
                    codec.to_micros(e.timestamp),
                    codec.encode_event(e),
                ),
            )
            return
        self._many(
            _INSERT_EVENT,
            [
                (
                    e.id,
                    e.customer_pk,
                    e.feature_id,
                    codec.to_micros(e.timestamp),
                    codec.encode_event(e),
                )
                for e in events
            ],
        )

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
        sql = "SELECT data FROM events WHERE customer_pk = ?"
        params: list[Any] = [customer_pk]
        if starting_after is not None:
            # An id that is not one of this customer's events gives an empty page.
            sql += " AND seq > (SELECT seq FROM events WHERE id = ? AND customer_pk = ?)"
            params.extend((starting_after, customer_pk))
        if feature_id is not None:
            sql += " AND feature_id = ?"
            params.append(feature_id)
        if start is not None:
            sql += " AND ts_us >= ?"
            params.append(codec.to_micros(start))
        if end is not None:
            sql += " AND ts_us < ?"
            params.append(codec.to_micros(end))
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [self._decode(r[0], EventRecord) for r in self._all(sql, params)]

    # -- idempotency ------------------------------------------------------------------------
    def get_idempotency(
        self, operation: str, customer_pk: str, key: str
    ) -> IdempotencyRecord | None:
        row = self._one(
            "SELECT data FROM idempotency WHERE operation = ? AND customer_pk = ? AND key = ?",
            (operation, customer_pk, key),
        )
        return None if row is None else self._decode(row[0], IdempotencyRecord)

    def put_idempotency(self, record: IdempotencyRecord) -> None:
        self._need_write()
        created_us = codec.to_micros(record.created_at)
        ident = (record.operation, record.customer_pk, record.key)
        row = self._one(
            "SELECT created_us FROM idempotency"
            " WHERE operation = ? AND customer_pk = ? AND key = ?",
            ident,
        )
        if row is not None:
            if created_us - row[0] < _IDEMPOTENCY_TTL_US:
                raise UniqueViolation(f"idempotency key {record.key!r} is in use")
            self._exec(
                "DELETE FROM idempotency WHERE operation = ? AND customer_pk = ? AND key = ?", ident
            )
        self._exec(
            "INSERT INTO idempotency (operation, customer_pk, key, created_us, data)"
            " VALUES (?, ?, ?, ?, ?)",
            (*ident, created_us, codec.encode(record)),
        )

    # -- trials, renewals, provider events ---------------------------------------------------
    def trial_claimed(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        if self._one(
            "SELECT 1 FROM trial_subject_claims"
            " WHERE product_id = ? AND customer_pk = ? AND entity_key = ?",
            (product_id, customer_pk, entity_id or ""),
        ):
            return True
        if fingerprint is None:
            return False
        row = self._one(
            "SELECT 1 FROM trial_fingerprint_claims WHERE product_id = ? AND fingerprint = ?",
            (product_id, fingerprint),
        )
        return row is not None

    def claim_trial(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        self._need_write()
        if self.trial_claimed(product_id, customer_pk, entity_id, fingerprint):
            return False
        # Both claims or neither: the savepoint undoes the first if the second is refused.
        self._exec("SAVEPOINT claim_trial")
        try:
            self._exec(
                "INSERT INTO trial_subject_claims (product_id, customer_pk, entity_key)"
                " VALUES (?, ?, ?)",
                (product_id, customer_pk, entity_id or ""),
            )
            if fingerprint is not None:
                self._exec(
                    "INSERT INTO trial_fingerprint_claims (product_id, fingerprint) VALUES (?, ?)",
                    (product_id, fingerprint),
                )
        except UniqueViolation:
            self._exec("ROLLBACK TO claim_trial")
            self._exec("RELEASE claim_trial")
            return False
        self._exec("RELEASE claim_trial")
        return True

    def claim_renewal(self, cp_instance_id: str, period_start: datetime) -> bool:
        self._need_write()
        cur = self._exec(
            "INSERT INTO renewal_markers (cp_instance_id, period_start_us) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            (cp_instance_id, codec.to_micros(period_start)),
        )
        return cur.rowcount == 1

    def claim_gateway_event(self, event_id: str) -> bool:
        self._need_write()
        cur = self._exec(
            "INSERT INTO gateway_events (event_id) VALUES (?) ON CONFLICT DO NOTHING", (event_id,)
        )
        return cur.rowcount == 1

    # -- invoices ---------------------------------------------------------------------------
    def save_invoice(self, invoice: InvoiceRecord) -> None:
        self._need_write()
        self._exec(
            "INSERT INTO invoices (id, customer_pk, gateway_invoice_id, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET customer_pk = excluded.customer_pk,"
            " gateway_invoice_id = excluded.gateway_invoice_id, data = excluded.data",
            (invoice.id, invoice.customer_pk, invoice.gateway_invoice_id, codec.encode(invoice)),
        )

    def get_invoice(self, invoice_id: str) -> InvoiceRecord | None:
        row = self._one("SELECT data FROM invoices WHERE id = ?", (invoice_id,))
        return None if row is None else self._decode(row[0], InvoiceRecord)

    def find_invoice_by_gateway_id(self, gateway_invoice_id: str) -> InvoiceRecord | None:
        row = self._one(
            "SELECT data FROM invoices WHERE gateway_invoice_id = ? ORDER BY seq LIMIT 1",
            (gateway_invoice_id,),
        )
        return None if row is None else self._decode(row[0], InvoiceRecord)

    def list_invoices(self, customer_pk: str) -> list[InvoiceRecord]:
        rows = self._all(
            "SELECT data FROM invoices WHERE customer_pk = ? ORDER BY seq", (customer_pk,)
        )
        return [self._decode(r[0], InvoiceRecord) for r in rows]

    # -- pending ----------------------------------------------------------------------------
    def put_pending(self, record: PendingRecord) -> None:
        self._need_write()
        self._exec(
            "INSERT INTO pending (key, customer_pk, kind, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET customer_pk = excluded.customer_pk,"
            " kind = excluded.kind, data = excluded.data",
            (record.key, record.customer_pk, record.kind, codec.encode(record)),
        )

    def get_pending(self, key: str) -> PendingRecord | None:
        row = self._one("SELECT data FROM pending WHERE key = ?", (key,))
        return None if row is None else self._decode(row[0], PendingRecord)

    def delete_pending(self, key: str) -> None:
        self._need_write()
        self._exec("DELETE FROM pending WHERE key = ?", (key,))

    def list_pending(self, kind: str) -> list[PendingRecord]:
        rows = self._all("SELECT data FROM pending WHERE kind = ? ORDER BY key", (kind,))
        return [self._decode(r[0], PendingRecord) for r in rows]


# -- the store ------------------------------------------------------------------------------


class _Holder:
    """One connection and the process that opened it (weakly referenced by the store)."""

    __slots__ = ("__weakref__", "conn", "generation")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.generation = _fork_generation


class SqliteStore:
    """The SQLite store: a file shared by threads and processes, or ``":memory:"``.

    ``synchronous`` is SQLite's durability setting: ``"NORMAL"`` (the default, with WAL: a
    committed call survives the process being killed, the last commits may be lost on power
    failure) or ``"FULL"`` (every commit is fsynced). ``lock_timeout`` bounds how long a write
    waits for the database lock before failing with ``StoreError``.

    Example:
        ```python
        billing = Autumn(catalog, store=SqliteStore("billing.db", synchronous="FULL"))
        ```
    """

    capabilities = StoreCapabilities(multi_process=True, durable=True)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        mode = str(synchronous).upper()
        if mode not in SYNCHRONOUS_MODES:
            raise InvalidRequest(
                f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, got {synchronous!r}"
            )
        if not lock_timeout > 0:
            raise InvalidRequest(f"lock_timeout must be positive, got {lock_timeout!r}")
        self.path = os.fspath(path)
        self.synchronous = mode
        self.lock_timeout = float(lock_timeout)
        self._memory = self.path in (":memory:", "")
        if self._memory:
            self.capabilities = StoreCapabilities(multi_process=False, durable=False)
        self._cache_size = max(0, int(cache_size))
        #: pk -> (seq, state) of committed states; read without a lock (dict reads are atomic),
        #: written under ``_cache_lock``.
        self._cache: dict[str, tuple[int, CustomerState]] = {}
        self._cache_lock = threading.Lock()
        self._local = threading.local()
        #: Every open connection, through its holder: a thread's holder dies with the thread
        #: (taking its connection with it), and ``close`` reaches the ones still alive.
        self._connections: weakref.WeakSet[_Holder] = weakref.WeakSet()
        self._connections_lock = threading.Lock()
        #: Writers of this process queue here before competing for the file lock; a ``:memory:``
        #: store serialises every transaction on it (its one connection is shared).
        self._write_lock: threading.Lock | threading.RLock = (
            threading.RLock() if self._memory else threading.Lock()
        )
        self._shared: _Holder | None = None
        self._generation = _fork_generation
        self._closed = False
        #: Whether the file was judged ours: until then no connection writes anything, not even
        #: the switch to WAL, so a foreign or damaged file is refused with its bytes unchanged.
        self._judged = self._memory
        conn = self._connection()
        self._judge(conn)
        self._migrate(conn)
        self._judged = True
        if not self._memory:
            self._set_wal(conn)

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    # -- public -----------------------------------------------------------------------------
    def transaction(self, *, write: bool = True) -> SqliteTransaction:
        """A context manager running one transaction (see the module docstring).

        Example:
            ```python
            with store.transaction(write=False) as tx:
                pk = tx.customer_pk("user-1")
            ```
        """
        if self._closed:
            raise StoreError("the store is closed")
        if self._generation != _fork_generation:
            self._forked()
        return SqliteTransaction(self, self._connection(), write)

    def close(self) -> None:
        """Close every connection this store opened; later calls raise ``StoreError``.

        Example:
            ```python
            store = SqliteStore("billing.db")
            store.close()
            ```
        """
        self._closed = True
        with self._connections_lock:
            conns = [h.conn for h in self._connections]
            self._connections.clear()
        if self._shared is not None:
            conns.append(self._shared.conn)
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):  # closing is best effort
                conn.close()
        self._cache.clear()

    def _forked(self) -> None:
        """First use in a forked child: fresh locks; connections are re-made per thread."""
        self._generation = _fork_generation
        self._write_lock = threading.RLock() if self._memory else threading.Lock()
        self._cache_lock = threading.Lock()
        self._connections_lock = threading.Lock()

    @property
    def schema_version(self) -> int:
        """The schema version of the open database.

        Example:
            ```python
            assert SqliteStore("billing.db").schema_version == autumn_sqlite.schema.current_version()
            ```
        """
        conn = self._connection()
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    # -- connections ------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._memory:
            if self._shared is None:
                self._shared = self._connect()
            return self._shared.conn
        holder: _Holder | None = getattr(self._local, "holder", None)
        if holder is not None:
            if holder.generation == _fork_generation:
                return holder.conn
            _INHERITED.append(holder.conn)
        holder = self._connect()
        self._local.holder = holder
        return holder.conn

    def _connect(self) -> _Holder:
        if self._closed:
            raise StoreError("the store is closed")
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,  # close() may run on another thread
                timeout=BUSY_TIMEOUT_MS / 1000,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise self._unopenable(exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            if self._judged and not self._memory:
                self._set_wal(conn)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise self._unopenable(exc) from exc
        except BaseException as exc:
            conn.close()
            raise translate(exc) from exc
        holder = _Holder(conn)
        with self._connections_lock:
            self._connections.add(holder)
        return holder

    def _set_wal(self, conn: sqlite3.Connection) -> None:
        try:
            self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        except sqlite3.Error as exc:
            self.close()
            raise self._unopenable(exc) from exc

    def _unopenable(self, exc: sqlite3.Error) -> StoreError:
        """The error for a file that cannot be used, naming the file and the reason."""
        name = getattr(exc, "sqlite_errorname", "")
        if name == "SQLITE_NOTADB" or "not a database" in str(exc):
            reason = "it is not a SQLite database"
        elif name.startswith("SQLITE_READONLY") or "readonly" in str(exc):
            reason = "it is read-only (check the permissions of the file and its directory)"
        elif name.startswith("SQLITE_CANTOPEN") or "unable to open" in str(exc):
            reason = "cannot open the file (does its directory exist, is it readable?)"
        elif _is_busy(exc):
            return translate(exc)
        else:
            reason = str(exc)
        return StoreError(f"cannot use SQLite database {self.path}: {reason}")

    def _judge(self, conn: sqlite3.Connection) -> None:
        """Refuse a file that is not ours before anything writes to it (one read transaction,
        so a concurrent first opener's migration is seen whole or not at all)."""
        if self._memory:
            return

        def look() -> None:
            conn.execute("BEGIN")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                self._check_version(conn, version, schema.current_version())
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

        try:
            self._retry_busy(look)
        except sqlite3.Error as exc:
            self.close()
            raise self._unopenable(exc) from exc
        except StoreError:
            self.close()
            raise

    def _retry_busy(self, fn: Callable[[], T], deadline: float | None = None) -> T:
        """Run ``fn`` until it stops failing with a busy database, up to ``deadline``
        (``time.monotonic``; default: ``lock_timeout`` from now), sleeping with jitter."""
        if deadline is None:
            deadline = time.monotonic() + self.lock_timeout
        delay = 0.001
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                left = deadline - time.monotonic()
                if not _is_busy(exc) or left <= 0:
                    raise
                time.sleep(min(left, random.uniform(delay / 2, delay)))
                delay = min(delay * 2, 0.05)

    # -- transactions -----------------------------------------------------------------------
    def _begin(self, conn: sqlite3.Connection, write: bool) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        locked = write or self._memory
        deadline = time.monotonic() + self.lock_timeout
        if self._memory:
            self._write_lock.acquire()
        elif conn.in_transaction:
            raise StoreError("a transaction is already open on this thread")
        elif write and not self._write_lock.acquire(timeout=self.lock_timeout):
            raise StoreError(
                f"timed out after {self.lock_timeout} s waiting for this process's writers;"
                " nothing was changed"
            )
        try:
            if conn.in_transaction:
                raise StoreError("a transaction is already open on this thread")
            if write:
                self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), deadline)
            else:
                conn.execute("BEGIN")
        except BaseException as exc:
            if locked:
                self._write_lock.release()
            if isinstance(exc, sqlite3.Error):
                if _is_busy(exc):
                    raise StoreError(
                        f"timed out after {self.lock_timeout} s waiting for the SQLite write lock"
                        f" on {self.path!r}; nothing was changed ({exc})"
                    ) from exc
                raise translate(exc) from exc
            raise

    def _commit(self, conn: sqlite3.Connection, write: bool) -> None:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn, write)
            raise translate(exc) from exc
        if write or self._memory:
            self._write_lock.release()

    def _rollback(self, conn: sqlite3.Connection, write: bool) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:  # pragma: no cover - the connection is broken; SQLite rolls back
            pass
        finally:
            if write or self._memory:
                self._write_lock.release()

    # -- the parsed-customer cache ------------------------------------------------------------
    def _cache_put(self, pk: str, seq: int, state: CustomerState) -> None:
        if not self._cache_size:
            return
        with self._cache_lock:
            cache = self._cache
            if pk not in cache and len(cache) >= self._cache_size:
                del cache[next(iter(cache))]
            cache[pk] = (seq, state)

    def _publish(self, overlay: dict[str, tuple[int, Any]]) -> None:
        """After a COMMIT: the states this transaction wrote are now the committed ones."""
        for pk, (seq, state) in overlay.items():
            if state is _DELETED:
                with self._cache_lock:
                    self._cache.pop(pk, None)
            else:
                self._cache_put(pk, seq, state)

    # -- schema ---------------------------------------------------------------------------------
    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the database to the current schema version, or refuse a newer one."""
        target = schema.current_version()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == target:
                self._check_version(conn, version, target)
                return
            # Any other version is judged only under the write lock below: outside a
            # transaction, another opener may migrate between reading the version and
            # looking at the tables, and its fresh tables would look foreign.
            with self._write_lock:
                self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
                try:
                    # Re-read under the lock: another process may have migrated meanwhile.
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    self._check_version(conn, version, target)
                    for step in schema.MIGRATIONS[version:target]:
                        for statement in step:
                            conn.execute(statement)
                    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {target}")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            self.close()
            raise self._unopenable(exc) from exc
        except StoreError:
            self.close()
            raise

    def _check_version(self, conn: sqlite3.Connection, version: int, target: int) -> None:
        if version > target:
            raise StoreError(
                f"the database {self.path!r} has schema version {version}, newer than the"
                f" {target} this autumn_sqlite knows; upgrade autumn_sqlite to open it"
            )
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if version > 0 and app_id != schema.APPLICATION_ID:
            raise StoreError(
                f"cannot use SQLite database {self.path}: it is not an autumn database"
                f" (application_id {app_id}); it was left untouched"
            )
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise StoreError(
                    f"cannot use SQLite database {self.path}: it holds someone else's tables"
                    " and no autumn schema; it was left untouched"
                )


if TYPE_CHECKING:  # SqliteStore satisfies the port (checked by mypy, never run)
    from autumn_core.ports import Store

    def _is_a_store(path: str) -> Store:
        return SqliteStore(path)


__all__ = ["IDEMPOTENCY_TTL", "SqliteStore", "SqliteTransaction", "translate"]
