"""A PostgreSQL transaction's life cycle and statements: one ``Wire`` owns the connection from
``BEGIN`` to ``COMMIT``/``ROLLBACK``; a read transaction keeps one snapshot by replaying its
first statement (``Session._read``). The customers and the other records build on it
(``transaction``, ``records``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Final, Protocol

import psycopg

from autumn_core.errors import StoreError
from autumn_core.model import CustomerState
from autumn_postgres.errors import RetryableStoreError, translate
from autumn_postgres.sql import (
    W_LOCK_BY_ID,
    W_LOCK_BY_PK,
    W_READ_BY_ID,
    W_READ_BY_PK,
    wire_statement,
)
from autumn_postgres.wire import (
    BEGIN_SNAPSHOT,
    CommitInDoubt,
    ConnectionLost,
    Statement,
    Wire,
    rows,
)
from autumn_sqldoc.cache import ParseCache

Conn = psycopg.Connection[Any]

#: What a parsed customer was built from, to reuse at the next parse of a newer version: the
#: head document's text and the state its fields were parsed into (None: unknown), and per
#: child table (``CHILDREN`` order) each document's text -> the record parsed from it.
#: A pure memo of parsing (text -> record), so reusing it can never be wrong; it holds the
#: documents of one version only (rebuilt at each parse), so it is bounded like the entry.
Parts = tuple[str | None, CustomerState | None, tuple[dict[str, Any], ...]]
#: A cache entry: (seq, version, parsed state, what it was parsed from or None).
Entry = tuple[int, int, CustomerState, Parts | None]
NO_DOCS: Final[dict[str, Any]] = {}
Held = tuple[int, CustomerState]
#: A statement of a read transaction, to replay: (kind, wire statement, sql, params, result).
Read = tuple[str, Statement | None, str, Any, Any]


class StoreSide(Protocol):
    """What a transaction needs of its store: connections, commit settlement, the parse cache
    and the id -> pk hints."""

    cache: ParseCache[Entry]
    _ids: dict[str, str]

    def _acquire(self) -> Conn: ...

    def _wire_on(self, conn: Conn) -> Wire: ...

    def _release(self, conn: Conn, wire: Wire) -> None: ...

    def _settle(self, doubt: CommitInDoubt) -> None: ...

    def _remember_id(self, customer_id: str, pk: str) -> None: ...

    def _lost_race(self, pks: Iterable[str]) -> None: ...

    def _is_contended(self, pk: str) -> bool: ...


class Session:
    """One unit of work on one pooled connection; also its own context manager.

    Every statement goes through one ``Wire`` that owns the connection from ``BEGIN`` to
    ``COMMIT``/``ROLLBACK`` (see ``autumn_postgres.wire``)."""

    _conn: Conn
    _wire: Wire

    def __init__(self, store: StoreSide, write: bool, *, optimistic: bool = False) -> None:
        self._store = store
        self._write = write
        #: A write that reads customers without locking them (the save verifies their version).
        self._optimistic = optimistic
        #: Cache entries this transaction produced: published only after COMMIT.
        self._staged: dict[str, Entry | None] = {}
        #: Customers fetched whole (and, writing, locked) by ``customer_pk`` (pk -> state).
        self._prefetched: dict[str, CustomerState] = {}
        #: pk -> (seq, state) that this transaction knows the database holds (it read, inserted
        #: or saved it): the base a save diffs against.
        self._held: dict[str, Held] = {}
        #: Read transactions: the first statement and its result (it ran on its own snapshot);
        #: replayed in the snapshot opened for the second statement (see ``_read``).
        self._first: Read | None = None
        #: Read transactions: a REPEATABLE READ transaction is open (or queued on the wire).
        self._snapshot = False

    # -- life cycle ---------------------------------------------------------------------------
    def __enter__(self) -> Session:
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
                if self._optimistic and getattr(exc, "retryable", False):
                    self._store._lost_race(self._held)
                return
            try:
                self._wire.commit()  # the queued writes, COMMIT and one Sync
            except CommitInDoubt as doubt:
                self._store._settle(doubt)  # returns only if the transaction committed
            except BaseException as err:
                self._abort()
                error = translate(err)
                if self._optimistic and error.retryable:
                    self._store._lost_race(self._held)
                raise error from err
            self._store.cache.publish(self._staged)
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
            self._store.cache.publish(self._staged)

    # -- helpers ------------------------------------------------------------------------------
    def _need_write(self) -> None:
        if not self._write:
            raise StoreError("write attempted in a read transaction")

    def _fire(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        """Queue a statement whose result nobody needs; errors surface by COMMIT at the latest."""
        self._wire.fire(wire_statement(sql), params)

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
        return self._decode(kind, self._wire.one(stmt or wire_statement(sql), params))

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
        wire.keep(stmt0 or wire_statement(sql0), params0)
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
        wire.keep(W_LOCK_BY_ID if by_id else W_LOCK_BY_PK, {"key": key})
        row = self._decode_row(wire.one(W_READ_BY_ID if by_id else W_READ_BY_PK, params))
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


__all__ = ["NO_DOCS", "Conn", "Entry", "Held", "Parts", "Session", "StoreSide"]
