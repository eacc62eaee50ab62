"""The store's own executor on libpq: every statement of a transaction goes through here.

A ``Wire`` owns its connection for the whole transaction, from ``BEGIN`` to ``COMMIT`` or
``ROLLBACK``: psycopg's cursors, pipeline and prepared-statement cache never touch the
connection in between (the store's connections are opened with ``prepare_threshold=None``, so
psycopg itself prepares and deallocates nothing). Only psycopg's documented ``pq`` layer is used
(``conn.pgconn``: send, flush, poll, read results), and errors are read from the results'
documented fields, so nothing depends on how psycopg's higher layers behave.

- Statements are named prepared statements (``autumn_<hash>``), prepared lazily *in the same
  pipeline* as their first execution (a ``Parse`` ahead of the ``Bind``), so preparing never
  costs a round trip; which names a session holds is remembered per connection, and only the
  wire adds to or clears that record. With ``named=False``, and on a connection whose session
  was once found reset (``26000``: a proxy that multiplexes sessions, such as pgbouncer in
  transaction mode, or a ``DISCARD ALL``), every statement is parsed unnamed instead.
- Parameters are sent as text with types inferred by the server from the SQL; results are read
  as text (``rows``).
- Nothing is sent until a result is needed (``one``: a flush request) or the work is done
  (``commit`` / ``finish``: one ``Sync``), so a write transaction is two round trips:
  BEGIN + lock + load, then the writes + COMMIT. Statements queued with ``keep`` have their
  results kept (``kept``), so two statements whose results are both needed share one round trip.
- Every wait on the socket is bounded (``wait_limit`` seconds): a stalled server fails the call
  with ``WireTimeout`` instead of hanging; the connection is then unusable and is discarded.
- ``commit`` knows what it knows: the COMMIT's own result says the transaction committed even if
  the connection dies right after it; when the connection dies before that result arrives, it
  raises ``CommitInDoubt`` with the transaction id (read in the same batch), so the store can
  ask a fresh session what became of it.
"""

from __future__ import annotations

import hashlib
import re
import select
from collections import deque
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import psycopg
from psycopg import pq

_OK: Final = frozenset({pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK})
_FATAL: Final = pq.ExecStatus.FATAL_ERROR
_ABORTED: Final = pq.ExecStatus.PIPELINE_ABORTED
_SYNC: Final = pq.ExecStatus.PIPELINE_SYNC
_PARAM: Final = re.compile(r"%\((\w+)\)s|%s|%%")

#: SQLSTATE of "prepared statement does not exist": the session was reset (``DISCARD ALL``) by
#: someone else; the names this connection was thought to hold are forgotten.
UNKNOWN_STATEMENT: Final = "26000"
#: SQLSTATE of "prepared statement already exists": the session holds a statement the wire did
#: not know of (a proxy handed over another server session); it is recorded as prepared.
DUPLICATE_STATEMENT: Final = "42P05"

#: Recorded in a connection's set of prepared names once its session was found reset.
UNNAMED: Final = b""

BEGIN: Final = "BEGIN ISOLATION LEVEL READ COMMITTED"
#: A read transaction of more than one statement: one snapshot for all of them.
BEGIN_SNAPSHOT: Final = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

#: ``_expect`` markers: a statement whose result goes to ``kept``; the transaction id read at
#: commit; the COMMIT itself.
_KEEP: Final = b"="
_XID: Final = b"xid"
_COMMITTED: Final = b"commit"


class ServerError(Exception):
    """The server refused a statement (its SQLSTATE and message)."""

    def __init__(self, sqlstate: str | None, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


class ConnectionLost(Exception):
    """The connection failed (closed, reset, or an unreadable reply); it cannot be reused.

    ``before_commit``: the server ended the session with an error sent in place of the result
    of a statement queued *ahead of* COMMIT; it answers in order and exits after that error,
    so it never ran the COMMIT."""

    before_commit: bool = False


class WireTimeout(ConnectionLost):
    """The server did not answer within the wait limit; the connection was abandoned."""


class CommitInDoubt(Exception):
    """The connection failed after COMMIT was sent and before its result arrived.

    ``xid`` is the transaction's id when it was read (None: nothing was written, or the
    connection failed before the id arrived)."""

    def __init__(self, xid: str | None, cause: BaseException) -> None:
        super().__init__(f"the connection failed while committing ({cause})")
        self.xid = xid
        self.cause = cause


class Statement:
    """One SQL text with ``%(name)s`` or ``%s`` parameters, as a (named) prepared statement."""

    __slots__ = ("name", "names", "positional", "sql")

    def __init__(self, sql: str) -> None:
        names: list[str] = []
        kinds: set[str] = set()

        def number(m: re.Match[str]) -> str:
            if m.group(0) == "%%":
                return "%"
            name = m.group(1)
            if name is None:
                kinds.add("positional")
                names.append(str(len(names)))
                return f"${len(names)}"
            kinds.add("named")
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        converted = _PARAM.sub(number, sql)
        if len(kinds) > 1:
            raise ValueError("a statement takes either %(name)s or %s parameters, not both")
        self.sql: bytes = converted.encode()
        self.names: tuple[str, ...] = tuple(names)
        self.positional = kinds == {"positional"}
        self.name: bytes = b"autumn_" + hashlib.sha1(self.sql).hexdigest()[:16].encode()

    def values(self, params: Any, encoding: str) -> list[bytes | None]:
        if self.positional:
            if len(params) != len(self.names):
                raise ValueError(f"expected {len(self.names)} parameters, got {len(params)}")
            return [_text(v, encoding) for v in params]
        return [_text(params[n], encoding) for n in self.names]


def _text(value: Any, encoding: str) -> bytes | None:
    """A parameter as PostgreSQL text input (its type comes from the statement)."""
    if value is None:
        return None
    kind = type(value)
    if kind is str:
        return value.encode(encoding)  # type: ignore[no-any-return]
    if kind is bool:
        return b"t" if value else b"f"
    if kind is int:
        return str(value).encode()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"refusing to send a naive datetime: {value!r}")
        return value.isoformat().encode()
    if kind is Decimal:
        return str(value).encode()
    if isinstance(value, timedelta):
        return f"{value // timedelta(microseconds=1)} microseconds".encode()
    raise TypeError(f"no text form for a {kind.__name__} parameter")


Row = tuple[str | None, ...]


def rows(res: pq.abc.PGresult, encoding: str = "utf-8") -> list[Row]:
    """Every row of a result, each value as text (None for NULL)."""
    value = res.get_value
    width = res.nfields
    out: list[Row] = []
    for r in range(res.ntuples):
        out.append(
            tuple(
                None if (v := value(r, c)) is None else bytes(v).decode(encoding)
                for c in range(width)
            )
        )
    return out


def _server_error(res: pq.abc.PGresult, encoding: str) -> ServerError:
    state = res.error_field(pq.DiagnosticField.SQLSTATE)
    message = res.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or res.error_message
    return ServerError(
        None if state is None else state.decode("ascii", "replace"),
        bytes(message).decode(encoding, "replace").strip(),
    )


class Wire:
    """Pipelined execution of ``Statement`` s on one connection (one transaction's worth).

    ``prepared`` is the set of statement names the session holds (shared, per connection).
    With ``begin`` the first flush also carries ``BEGIN``; without it (reads) every ``one`` is
    its own implicit transaction, closed by a ``Sync``. ``eager`` sends and waits for every
    statement on its own (one round trip each).
    """

    __slots__ = (
        "_begin",
        "_encoding",
        "_expect",
        "_limit_ms",
        "_named",
        "_pg",
        "_poll",
        "_prepared",
        "active",
        "begun",
        "broken",
        "committed",
        "eager",
        "kept",
        "opened",
        "xid",
    )

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        prepared: set[bytes],
        *,
        wait_limit: float,
        named: bool = True,
        eager: bool = False,
    ) -> None:
        self._pg = conn.pgconn
        self._encoding = conn.info.encoding
        self._prepared = prepared
        self._named = named
        self._limit_ms = max(1, int(wait_limit * 1000))
        self.eager = eager
        #: What each result still to be read answers: a statement name when it is a Parse,
        #: a marker (``_KEEP``, ``_XID``, ``_COMMITTED``), b"" for any other statement, None
        #: for a Sync.
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
        #: The connection failed or timed out: it must not be reused.
        self.broken = False
        #: The transaction id read at commit (None when nothing was written).
        self.xid: str | None = None
        #: The COMMIT's own result was read: the transaction committed.
        self.committed = False

    @property
    def encoding(self) -> str:
        return self._encoding

    # -- sending ------------------------------------------------------------------------------
    def begin(self, sql: str = BEGIN) -> None:
        """Open a transaction: ``BEGIN`` (or ``sql``, e.g. ``BEGIN_SNAPSHOT``) is queued ahead
        of the next statement (a transaction that sends none costs nothing)."""
        self.begun = True
        self._begin = (
            _BEGIN if sql == BEGIN else _BEGIN_SNAPSHOT if sql == BEGIN_SNAPSHOT else Statement(sql)
        )

    def _send(self, stmt: Statement, params: Any, what: bytes = b"") -> None:
        if not self.active:
            self._guard(self._pg.enter_pipeline_mode)
            self.active = True
        if self.begun and not self.opened:
            self._send_one(self._begin, ())
            self.opened = True
        self._send_one(stmt, params, what)

    def _send_one(self, stmt: Statement, params: Any, what: bytes = b"") -> None:
        pg = self._pg
        values = stmt.values(params, self._encoding)
        if not self._named or UNNAMED in self._prepared:
            self._guard(lambda: pg.send_query_params(stmt.sql, values))
            self._expect.append(what)
            return
        if stmt.name not in self._prepared:
            self._guard(lambda: pg.send_prepare(stmt.name, stmt.sql))
            self._expect.append(stmt.name)
            self._prepared.add(stmt.name)  # taken back if the Parse fails or is skipped
        self._guard(lambda: pg.send_query_prepared(stmt.name, values))
        self._expect.append(what)

    def fire(self, stmt: Statement, params: Any) -> None:
        """Queue a statement whose result nobody needs (errors surface at the next read)."""
        self._send(stmt, params)
        if self.eager:
            self._round_trip()

    def keep(self, stmt: Statement, params: Any) -> None:
        """Queue a statement whose result is appended to ``kept`` when it is read (by the next
        ``one``, ``commit`` or ``finish``)."""
        self._send(stmt, params, _KEEP)
        if self.eager:
            self._round_trip()

    def one(self, stmt: Statement, params: Any) -> pq.abc.PGresult:
        """Send everything queued and this statement; return its result (one round trip)."""
        self._send(stmt, params)
        result = self._round_trip()
        assert result is not None
        if not self.begun:
            self.finish()
        return result

    def _round_trip(self) -> pq.abc.PGresult | None:
        if self.begun:
            self._guard(self._pg.send_flush_request)
        else:
            self._guard(self._pg.pipeline_sync)
            self._expect.append(None)
        self._flush()
        return self._collect()

    def sync(self) -> None:
        """Send a Sync and read through it, staying in pipeline mode: after an error inside a
        transaction this ends the skipped-statements state (the transaction stays aborted
        until ``ROLLBACK`` or ``ROLLBACK TO SAVEPOINT``)."""
        if not self.active:
            return
        self._drain(sync=True)

    def _drain(self, *, sync: bool) -> None:
        """Send a Sync (if ``sync``), then read and drop every result up to it, errors too."""
        if sync:
            self._guard(self._pg.pipeline_sync)
            self._expect.append(None)
        self._flush()
        while self._expect:
            try:
                self._collect()
            except ServerError:
                continue

    def commit(self, *, in_doubt: bool = True) -> None:
        """Send ``COMMIT`` with everything queued, in one Sync, and leave pipeline mode.

        With ``in_doubt`` (a write) the transaction's id is read in the same batch, and a
        connection that fails after COMMIT was sent and before its result was read raises
        ``CommitInDoubt``; a failure after the result arrived is no failure (it committed;
        the connection is marked broken)."""
        if not (self.active and self.opened):
            self.finish()
            return
        if in_doubt:
            self._send_one(_CURRENT_XID, (), _XID)
        self._send_one(_COMMIT, (), _COMMITTED)
        try:
            self.finish()
        except ConnectionLost as exc:
            if self.committed:
                return
            if in_doubt and not exc.before_commit:
                raise CommitInDoubt(self.xid, exc) from exc
            raise

    def finish(self) -> None:
        """Send what is queued (one Sync), read every result and leave pipeline mode; errors
        of the queued statements are raised here."""
        if not self.active:
            return
        if self._expect:
            self._guard(self._pg.pipeline_sync)
            self._expect.append(None)
            self._flush()
            self._collect()
        self._guard(self._pg.exit_pipeline_mode)
        self.active = False

    def abort(self) -> None:
        """End whatever the connection is in: read and drop what is left, roll an open
        transaction back, leave pipeline mode. Raises ``ConnectionLost`` if the connection
        failed (the caller discards it)."""
        if self.broken:
            raise ConnectionLost("the connection failed earlier in this transaction")
        if self.active:
            self._drain(sync=not self._expect or self._expect[-1] is not None)
        if self._pg.transaction_status != pq.TransactionStatus.IDLE:
            if not self.active:
                self._guard(self._pg.enter_pipeline_mode)
                self.active = True
            self._send_one(_ROLLBACK, ())
            self._guard(self._pg.pipeline_sync)
            self._expect.append(None)
            self._flush()
            self._collect()
        if self.active:
            self._guard(self._pg.exit_pipeline_mode)
            self.active = False

    @property
    def clean(self) -> bool:
        """The connection is idle, out of pipeline mode, with nothing unread: fit for reuse."""
        pg = self._pg
        return (
            not self.broken
            and not self.active
            and pg.status == pq.ConnStatus.OK
            and pg.pipeline_status == pq.PipelineStatus.OFF
            and pg.transaction_status == pq.TransactionStatus.IDLE
        )

    # -- receiving ----------------------------------------------------------------------------
    def _guard(self, fn: Any) -> Any:
        """Run a libpq call; a failure of the connection itself is ``ConnectionLost``."""
        try:
            return fn()
        except psycopg.Error as exc:
            self.broken = True
            raise ConnectionLost(str(exc).strip() or type(exc).__name__) from exc

    def _wait(self, events: int) -> None:
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self._pg.socket, select.POLLIN)
        if events != select.POLLIN:
            self._poll.modify(self._pg.socket, events)
        try:
            ready = self._poll.poll(self._limit_ms)
        finally:
            if events != select.POLLIN:
                self._poll.modify(self._pg.socket, select.POLLIN)
        if not ready:
            self.broken = True
            raise WireTimeout(
                f"PostgreSQL did not answer within {self._limit_ms / 1000:g} s"
                " (a stalled server or network)"
            )

    def _flush(self) -> None:
        pg = self._pg
        while self._guard(pg.flush):  # non-blocking connection: 1 while data is left to send
            self._wait(select.POLLIN | select.POLLOUT)
            self._guard(pg.consume_input)

    def _result(self) -> pq.abc.PGresult | None:
        pg = self._pg
        while self._guard(pg.is_busy):
            self._wait(select.POLLIN)
            self._guard(pg.consume_input)
        res: pq.abc.PGresult | None = pg.get_result()
        return res

    def _collect(self) -> pq.abc.PGresult | None:
        """Read every result expected; return the last statement's (Syncs aside). The first
        server error is raised after the rest was read."""
        error: Exception | None = None
        last: pq.abc.PGresult | None = None
        while self._expect:
            what = self._expect[0]
            res = self._result()
            if res is None:
                self.broken = True
                raise ConnectionLost(self._pg.error_message.decode(self._encoding, "replace"))
            self._expect.popleft()
            if what is None:  # a Sync: one PIPELINE_SYNC result, not followed by None
                if res.status != _SYNC:
                    self.broken = True
                    raise ConnectionLost(
                        _lost_message(res, self._encoding, f"expected a sync, got {res.status}")
                    )
                continue
            while self._result() is not None:  # each statement's results end with None
                pass
            status = res.status
            if status in _OK:
                if what is _KEEP:
                    self.kept.append(res)
                elif what is _XID:
                    v = res.get_value(0, 0) if res.ntuples else None
                    self.xid = None if v is None else bytes(v).decode()
                elif what is _COMMITTED:
                    self.committed = True
            else:
                if what and what not in _MARKERS:
                    self._prepared.discard(what)
                if error is None and status == _FATAL:
                    err = _server_error(res, self._encoding)
                    if err.sqlstate == UNKNOWN_STATEMENT:
                        # Someone resets this session between transactions (a pooling proxy
                        # such as pgbouncer, ``DISCARD ALL``): named statements cannot be kept
                        # here, so this connection sends every statement unnamed from now on.
                        self._prepared.clear()
                        self._prepared.add(UNNAMED)
                    elif err.sqlstate == DUPLICATE_STATEMENT and what and what not in _MARKERS:
                        self._prepared.add(what)
                    elif err.sqlstate is None or err.sqlstate.startswith(("08", "57P")):
                        self.broken = True
                        lost = ConnectionLost(err.message)
                        lost.before_commit = what is not _COMMITTED and _COMMITTED in self._expect
                        raise lost
                    error = err
                elif error is None and status != _ABORTED:
                    error = ConnectionLost(f"unexpected result status {status}")
            last = res
        if error is not None:
            raise error
        return last


def _lost_message(res: pq.abc.PGresult, encoding: str, default: str) -> str:
    if res.status == _FATAL:
        return _server_error(res, encoding).message
    return default


_BEGIN: Final = Statement(BEGIN)
_BEGIN_SNAPSHOT: Final = Statement(BEGIN_SNAPSHOT)
_COMMIT: Final = Statement("COMMIT")
_ROLLBACK: Final = Statement("ROLLBACK")
#: Read right before COMMIT, in the same batch: the id a fresh session can ask about when the
#: COMMIT's result is lost (``pg_xact_status``). Does not assign an id to a transaction that
#: wrote nothing.
_CURRENT_XID: Final = Statement("SELECT pg_current_xact_id_if_assigned()::text")
_MARKERS: Final = frozenset({_KEEP, _XID, _COMMITTED})

__all__ = [
    "BEGIN",
    "BEGIN_SNAPSHOT",
    "DUPLICATE_STATEMENT",
    "UNKNOWN_STATEMENT",
    "CommitInDoubt",
    "ConnectionLost",
    "Row",
    "ServerError",
    "Statement",
    "Wire",
    "WireTimeout",
    "rows",
]
