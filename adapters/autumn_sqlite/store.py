"""SqliteStore: the embedded default store, durable and safe across threads and processes.

How it keeps the Store port's promises with nothing but the standard library's ``sqlite3``:

- **One transaction per call.** ``transaction()`` hands out a ``SqliteTransaction`` that is its
  own context manager: ``BEGIN IMMEDIATE`` for writes (the write lock is taken up front, so two
  processes never both read a balance and then both write it), plain ``BEGIN`` for reads (WAL
  gives the reader one consistent snapshot without blocking writers). Leaving the block commits;
  an exception rolls back and propagates unchanged.
- **Group commit.** The writes of one process run on one writer connection, one at a time;
  writers that arrive while a transaction is open join it (each in a savepoint of its own) and
  the last of them commits for all (``autumn_sqlite.group``). The engine hands its writes over
  (``run_write``): the thread holding the turn runs the queued ones, so a waiting caller sleeps
  once. Each call returns only after the commit that holds its work (with ``FULL``, after the
  WAL sync, made outside the turn); a failed commit fails exactly the calls it held. Other
  processes still take turns on SQLite's file lock. ``group_commit=False`` gives every write
  its own transaction on the calling thread's connection.
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
  customer's (seq, version) and reuse the cached immutable object when it matches (the
  version is the row's plus the customer's last event sequence number, so the event a track
  appends is its version bump). Saves write only the child rows the core's ``CustomerChange``
  lists, so a ``track`` is one balance column update and one event insert: two pages.

The document mapping (child tables, head document, codec, parse cache) is the SQL stores'
shared ``autumn_sqldoc``; here live the dialect (``transaction``, ``saves``, ``records``), the connections
and the locking (this module), the error mapping (``errors``) and the schema (``schema``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from autumn_core.errors import InvalidRequest, StoreError
from autumn_core.ports import StoreCapabilities, StoreTransaction
from autumn_sqldoc.cache import ParseCache
from autumn_sqlite import schema
from autumn_sqlite.batches import Member
from autumn_sqlite.errors import is_busy, translate
from autumn_sqlite.group import GroupCommit
from autumn_sqlite.transaction import Entry, SqliteTransaction

T = TypeVar("T")

SYNCHRONOUS_MODES: Final = ("OFF", "NORMAL", "FULL", "EXTRA")

#: SQLite's own wait per attempt. Small, so that our jittered retry (fairer between processes
#: than SQLite's fixed polling) decides most of the waiting and the overall bound is ours.
BUSY_TIMEOUT_MS: Final = 20
#: Default bound on waiting for the write lock before a call fails with ``StoreError``.
DEFAULT_LOCK_TIMEOUT: Final = 5.0
#: Default number of parsed customers kept per store.
DEFAULT_CACHE_SIZE: Final = 10_000

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


# -- the store ------------------------------------------------------------------------------


class _Holder:
    """One connection and the process that opened it (weakly referenced by the store)."""

    __slots__ = ("__weakref__", "conn", "generation")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.generation = _fork_generation


def _datasync(fd: int) -> None:
    """``fdatasync`` where the platform has it (SQLite's own choice on Linux), else ``fsync``."""
    getattr(os, "fdatasync", os.fsync)(fd)


_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)


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
        group_commit: bool = True,
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
        #: pk -> (seq, state) of committed states (``autumn_sqldoc.cache``).
        self.cache: ParseCache[Entry] = ParseCache(cache_size)
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
        #: Writes of this process share commits (``autumn_sqlite.group``), on one connection.
        self._group: GroupCommit | None = None
        self._writer: _Holder | None = None
        #: The WAL file, opened to sync it (``_sync_wal``).
        self._wal_fd: int | None = None
        self._wal_lock = threading.Lock()
        conn = self._connection()
        self._judge(conn)
        self._migrate(conn)
        self._judged = True
        if not self._memory:
            self._set_wal(conn)
            if group_commit:
                self._group = GroupCommit(
                    self._writer_connection,
                    self._begin_immediate,
                    translate,
                    self.lock_timeout,
                    sync=self._sync_wal if mode == "FULL" else None,
                )

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
        if self._group is not None and self._group.holds_turn():
            raise StoreError("a transaction is already open on this thread")
        return SqliteTransaction(self, self._connection(), write)

    def run_write(self, fn: Callable[[StoreTransaction], T]) -> T:
        """Run ``fn`` in a write transaction, maybe on another thread of this process, together
        with other threads' writes (``ports.CombiningStore``, ``autumn_sqlite.group``); its
        result once committed.

        Example:
            ```python
            pk = store.run_write(lambda tx: tx.customer_pk("user-1"))
            ```
        """
        group = self._group
        if group is None or self._closed or self._generation != _fork_generation:
            with self.transaction(write=True) as tx:
                return fn(tx)

        def work(conn: sqlite3.Connection, member: Member) -> tuple[Any, Callable[[], None]]:
            return SqliteTransaction(self, conn, True).run_joined(fn, member)

        result: T = group.run(work)
        return result

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
        if self._writer is not None and self._writer.conn not in conns:
            conns.append(self._writer.conn)
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):  # closing is best effort
                conn.close()
        self._close_wal()
        self.cache.clear()

    def _forked(self) -> None:
        """First use in a forked child: fresh locks; connections are re-made per thread."""
        self._generation = _fork_generation
        self._write_lock = threading.RLock() if self._memory else threading.Lock()
        self._wal_lock = threading.Lock()
        if self._writer is not None:
            _INHERITED.append(self._writer.conn)
            self._writer = None
        if self._group is not None:
            self._group.forget_connection()
        self.cache.reset_lock()
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
            # A first open may meet another opener's migration holding the write lock.
            self._retry_busy(lambda: conn.execute(f"PRAGMA synchronous = {self.synchronous}"))
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

    def _writer_connection(self) -> sqlite3.Connection:
        """The connection every write of this process runs on (group commit).

        With ``synchronous="FULL"`` it commits as ``NORMAL`` does, and the group syncs the WAL
        file itself (``_sync_wal``) once it has passed the turn on, before the batch's writers
        return: FULL's sync, made while the next batch runs."""
        self._close_wal()
        self._writer = holder = self._connect()
        if self.synchronous == "FULL":
            try:
                holder.conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error as exc:
                raise translate(exc) from exc
        return holder.conn

    def _sync_wal(self) -> None:
        """What ``synchronous=FULL`` does after each commit: sync the WAL file. Its inode is
        stable while the writer connection is open (SQLite removes it only when the last
        connection closes, and a checkpoint rewrites it in place)."""
        with self._wal_lock:  # not while ``close`` closes it (a reused fd number)
            if self._closed:
                raise OSError(errno.EBADF, "the store was closed before the commit was synced")
            fd = self._wal_fd
            if fd is None:
                fd = self._wal_fd = os.open(self.path + "-wal", os.O_RDONLY | _CLOEXEC)
            _datasync(fd)

    def _close_wal(self) -> None:
        with self._wal_lock:
            fd, self._wal_fd = self._wal_fd, None
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _begin_immediate(self, conn: sqlite3.Connection, deadline: float) -> None:
        """``BEGIN IMMEDIATE``, waiting for other processes' writers until ``deadline``."""
        if self._closed:
            raise StoreError("the store is closed")
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), deadline)
        except sqlite3.Error as exc:
            if is_busy(exc):
                raise StoreError(
                    f"timed out after {self.lock_timeout} s waiting for the SQLite write lock"
                    f" on {self.path!r}; nothing was changed ({exc})"
                ) from exc
            raise translate(exc) from exc

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
        elif is_busy(exc):
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
                if not is_busy(exc) or left <= 0:
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
                self._begin_immediate(conn, deadline)
            else:
                conn.execute("BEGIN")
        except BaseException as exc:
            if locked:
                self._write_lock.release()
            if isinstance(exc, sqlite3.Error):
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


__all__ = ["SqliteStore", "SqliteTransaction", "translate"]
