"""A thin pipelined executor on libpq for the statements of the hot paths.

``track`` and ``check`` send a handful of fixed statements (lock-and-load or read of a customer,
the diff save, the event insert). Through psycopg's cursors and pipeline each of them costs a
cursor, a query conversion and a wait on the socket (a poll and a send), which on a small machine
is several times the engine's own work. ``Wire`` sends them on the connection's libpq handle
(``conn.pgconn``, psycopg's public ``pq`` layer) in pipeline mode instead:

- statements are named prepared statements (``autumn_<hash>``), prepared lazily *in the same
  pipeline* as their first execution (a ``Parse`` ahead of the ``Bind``), so preparing never
  costs a round trip; which names a connection holds is remembered per connection;
- parameters are sent as text with types inferred by the server from the SQL (every statement
  that goes through here casts or compares each parameter), results are read as text;
- nothing is sent until a result is needed (``one``: a flush request) or the work is done
  (``commit`` / ``finish``: one ``Sync``), so a write transaction is exactly two round trips:
  BEGIN + lock + load, then the writes + COMMIT;
- statements queued with ``keep`` have their results kept (``kept``), so two statements whose
  results are both needed (the lock and the load; a replayed read and the next one) share one
  round trip. Statements of one pipeline run in order: the second starts after the first has
  finished (and, for a lock, after the lock was granted).

Errors come back as the psycopg exception of the server's SQLSTATE (``errors.error_from_result``)
so that ``store.translate`` maps them like any other. After an error the transaction must be
ended with ``abort`` (which leaves pipeline mode); the caller then rolls back through psycopg.
"""

from __future__ import annotations

import hashlib
import re
import select
from collections import deque
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq

_OK: Final = frozenset({pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK})
_FATAL: Final = pq.ExecStatus.FATAL_ERROR
_ABORTED: Final = pq.ExecStatus.PIPELINE_ABORTED
_SYNC: Final = pq.ExecStatus.PIPELINE_SYNC
_PARAM: Final = re.compile(r"%\((\w+)\)s")

#: SQLSTATE of "prepared statement does not exist": the session was reset (``DISCARD ALL``) by
#: someone else; the names this connection was thought to hold are forgotten.
UNKNOWN_STATEMENT: Final = "26000"

BEGIN: Final = "BEGIN ISOLATION LEVEL READ COMMITTED"
#: A read transaction of more than one statement: one snapshot for all of them.
BEGIN_SNAPSHOT: Final = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

#: ``_expect`` marker of a statement whose result goes to ``kept``.
_KEEP: Final = b"="


class Statement:
    """One SQL text with ``%(name)s`` parameters, as a named prepared statement."""

    __slots__ = ("name", "names", "sql")

    def __init__(self, sql: str) -> None:
        names: list[str] = []

        def number(m: re.Match[str]) -> str:
            if m.group(1) not in names:
                names.append(m.group(1))
            return f"${names.index(m.group(1)) + 1}"

        converted = _PARAM.sub(number, sql)
        if "%s" in converted or "%%" in converted:
            raise ValueError("a wire statement takes %(name)s parameters only")
        self.sql: bytes = converted.encode()
        self.names: tuple[str, ...] = tuple(names)
        self.name: bytes = b"autumn_" + hashlib.sha1(self.sql).hexdigest()[:16].encode()

    def values(self, params: dict[str, Any], encoding: str) -> list[bytes | None]:
        return [_text(params[n], encoding) for n in self.names]


def _text(value: Any, encoding: str) -> bytes | None:
    """A parameter as PostgreSQL text input (its type comes from the statement)."""
    if value is None:
        return None
    kind = type(value)
    if kind is str:
        return value.encode(encoding)  # type: ignore[no-any-return]
    if kind is int:
        return str(value).encode()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"refusing to send a naive datetime: {value!r}")
        return value.isoformat().encode()
    if kind is Decimal:
        return str(value).encode()
    raise TypeError(f"no text form for a {kind.__name__} parameter")


class Wire:
    """Pipelined execution of ``Statement`` s on one connection (one transaction's worth).

    ``prepared`` is the set of statement names the connection holds (shared, per connection).
    With ``begin`` the first flush also carries ``BEGIN``; without it (reads) every ``one`` is
    its own implicit transaction, closed by a ``Sync``.
    """

    __slots__ = (
        "_begin",
        "_encoding",
        "_expect",
        "_pg",
        "_poll",
        "_prepared",
        "active",
        "begun",
        "kept",
        "opened",
    )

    def __init__(self, conn: psycopg.Connection[Any], prepared: set[bytes]) -> None:
        self._pg = conn.pgconn
        self._encoding = conn.info.encoding
        self._prepared = prepared
        #: What each result still to be read answers: a statement name when it is a Parse,
        #: ``_KEEP`` for a statement queued with ``keep``, b"" for any other command or query,
        #: None for a Sync.
        self._expect: deque[bytes | None] = deque()
        #: Results of the statements queued with ``keep``, in order, as they are read.
        self.kept: list[pq.abc.PGresult] = []
        self._begin = _BEGIN
        self._poll: Any = None
        #: In pipeline mode (statements may be queued or unread).
        self.active = False
        #: A transaction was asked for / its BEGIN was sent.
        self.begun = False
        self.opened = False

    # -- sending ------------------------------------------------------------------------------
    def begin(self, sql: str = BEGIN) -> None:
        """Open a transaction: ``BEGIN`` (or ``sql``, e.g. ``BEGIN_SNAPSHOT``) is queued ahead
        of the next statement (a transaction that sends none costs nothing)."""
        self.begun = True
        self._begin = (
            _BEGIN if sql == BEGIN else _BEGIN_SNAPSHOT if sql == BEGIN_SNAPSHOT else Statement(sql)
        )

    def _send(self, stmt: Statement, params: dict[str, Any], what: bytes = b"") -> None:
        pg = self._pg
        if not self.active:
            pg.enter_pipeline_mode()
            self.active = True
        if self.begun and not self.opened:
            self._send_one(self._begin, {})
            self.opened = True
        self._send_one(stmt, params, what)

    def _send_one(self, stmt: Statement, params: dict[str, Any], what: bytes = b"") -> None:
        pg = self._pg
        if stmt.name not in self._prepared:
            pg.send_prepare(stmt.name, stmt.sql)
            self._expect.append(stmt.name)
            self._prepared.add(stmt.name)  # taken back if the Parse fails or is skipped
        pg.send_query_prepared(stmt.name, stmt.values(params, self._encoding))
        self._expect.append(what)

    def fire(self, stmt: Statement, params: dict[str, Any]) -> None:
        """Queue a statement whose result nobody needs (errors surface at the next read)."""
        self._send(stmt, params)

    def keep(self, stmt: Statement, params: dict[str, Any]) -> None:
        """Queue a statement whose result is appended to ``kept`` when it is read (by the next
        ``one``, ``commit`` or ``finish``)."""
        self._send(stmt, params, _KEEP)

    def one(self, stmt: Statement, params: dict[str, Any]) -> pq.abc.PGresult:
        """Send everything queued and this statement; return its result (one round trip)."""
        self._send(stmt, params)
        if self.begun:
            self._pg.send_flush_request()
        else:
            self._pg.pipeline_sync()
            self._expect.append(None)
        self._flush()
        result = self._collect()
        assert result is not None
        if not self.begun:
            self.finish()
        return result

    def commit(self) -> None:
        """Send ``COMMIT`` with everything queued, in one Sync, and leave pipeline mode."""
        if self.active and self.opened:
            self._send_one(_COMMIT, {})
        self.finish()

    def finish(self) -> None:
        """Send what is queued (one Sync), read every result and leave pipeline mode, so that
        psycopg can use the connection; errors of the queued statements are raised here."""
        if not self.active:
            return
        if self._expect:
            self._pg.pipeline_sync()
            self._expect.append(None)
            self._flush()
            self._collect()
        self._pg.exit_pipeline_mode()
        self.active = False

    def abort(self) -> None:
        """After an error: read and drop what is left, leave pipeline mode (the transaction is
        left to the caller's ROLLBACK). Raises only if the connection itself failed."""
        if not self.active:
            return
        if not self._expect or self._expect[-1] is not None:
            self._pg.pipeline_sync()
            self._expect.append(None)
        self._flush()
        while self._expect:
            try:
                self._collect()
            except psycopg.DatabaseError:
                continue
        self._pg.exit_pipeline_mode()
        self.active = False

    # -- receiving ----------------------------------------------------------------------------
    def _wait(self, events: int) -> None:
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self._pg.socket, select.POLLIN)
        if events != select.POLLIN:
            self._poll.modify(self._pg.socket, events)
            self._poll.poll()
            self._poll.modify(self._pg.socket, select.POLLIN)
        else:
            self._poll.poll()

    def _flush(self) -> None:
        pg = self._pg
        while pg.flush():  # non-blocking connection: 1 while data is left to send
            self._wait(select.POLLIN | select.POLLOUT)
            pg.consume_input()

    def _result(self) -> pq.abc.PGresult | None:
        pg = self._pg
        while pg.is_busy():
            self._wait(select.POLLIN)
            pg.consume_input()
        return pg.get_result()

    def _collect(self) -> pq.abc.PGresult | None:
        """Read every result expected; return the last statement's (Syncs aside). The first
        error is raised after the rest was read."""
        error: psycopg.Error | None = None
        last: pq.abc.PGresult | None = None
        while self._expect:
            what = self._expect.popleft()
            res = self._result()
            if res is None:
                raise psycopg.OperationalError("the server sent no result")
            if what is None:  # a Sync: one PIPELINE_SYNC result, not followed by None
                if res.status != _SYNC:
                    raise psycopg.OperationalError(f"expected a sync, got {res.status}")
                continue
            while self._result() is not None:  # each statement's results end with None
                pass
            status = res.status
            if what is _KEEP and status in _OK:
                self.kept.append(res)
            elif status not in _OK:
                if what and what is not _KEEP:
                    self._prepared.discard(what)
                if error is None and status == _FATAL:
                    error = pg_errors.error_from_result(res, encoding=self._encoding)
                    if error.sqlstate == UNKNOWN_STATEMENT:
                        self._prepared.clear()
                elif error is None and status != _ABORTED:
                    error = psycopg.OperationalError(f"unexpected result status {status}")
            last = res
        if error is not None:
            raise error
        return last


_BEGIN: Final = Statement(BEGIN)
_BEGIN_SNAPSHOT: Final = Statement(BEGIN_SNAPSHOT)
_COMMIT: Final = Statement("COMMIT")

__all__ = ["BEGIN", "BEGIN_SNAPSHOT", "UNKNOWN_STATEMENT", "Statement", "Wire"]
