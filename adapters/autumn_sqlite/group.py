"""Group commit: the write transactions of many threads of one process share SQLite commits.

A SQLite database has one writer at a time, and a durable commit costs a disk sync. Threads
that write at the same moment (a web server's workers) therefore queue here, and instead of
one transaction each, the writers that arrive while a transaction is open join it:

- Every write runs on the store's one *writer connection*, one writer at a time (``_turn``).
- The first writer of a batch opens the transaction (``BEGIN IMMEDIATE``, which also takes the
  file lock other processes queue on). A writer that finds a batch open runs inside it, in a
  savepoint of its own: if its work fails, only its own statements are undone and its
  exception reaches its caller at once (nothing of it is ever committed).
- After its work, a writer hands its turn to the next waiting writer, leaving the transaction
  open, unless nobody is waiting or the batch is full: then it commits the batch.
- A writer whose work succeeded returns only after the batch's ``COMMIT`` succeeded, so each
  result is durable when its caller sees it. A failed ``COMMIT`` (or a failure that aborts the
  whole transaction) fails exactly the writers of that batch, each with the ``StoreError``.

A batch is therefore serialisable in the order its writers ran, exactly as if each had
committed alone, and a writer sees what the earlier writers of its batch wrote. Readers use
their own connections and see only committed batches.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Final

from autumn_core.errors import StoreError

#: Writers per batch, at most: bounds how long the first writer of a batch waits for its
#: result, and the size of one transaction.
MAX_BATCH: Final = 64
#: How long a finished writer waits for its batch's commit before it looks whether the batch
#: was left without a committer (a writer that gave up its turn unexpectedly).
_ORPHAN_CHECK_S: Final = 0.05
_SAVEPOINT: Final = "autumn_writer"


class Batch:
    """One open write transaction and the writers whose work is in it.

    Its end is signalled through a lock held from the batch's start and released once at its
    end (a latch): waiters take and give it back in turn. Cheaper to make than an ``Event``
    (a lock and a condition), and a batch is made for every transaction of a single writer.
    """

    __slots__ = ("_latch", "ended", "error", "members")

    def __init__(self) -> None:
        self.members = 0
        self.ended = False
        self.error: StoreError | None = None
        self._latch = threading.Lock()
        self._latch.acquire()

    def end(self, error: StoreError | None) -> None:
        """The batch committed (``error`` None) or failed; wakes every waiter."""
        if self.ended:
            return
        self.error = error
        self.ended = True
        self._latch.release()

    def wait(self, timeout: float) -> bool:
        """Whether the batch ended within ``timeout`` seconds."""
        if self.ended:
            return True
        if self._latch.acquire(timeout=timeout):
            self._latch.release()
            return True
        return self.ended


class Member:
    """One writer's place in a batch (``GroupCommit.enter`` to ``GroupCommit.leave``)."""

    __slots__ = ("batch", "first")

    def __init__(self, batch: Batch, first: bool) -> None:
        self.batch = batch
        self.first = first


class GroupCommit:
    """The writers of one store in one process (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        begin: Callable[[sqlite3.Connection, float], None],
        translate: Callable[[BaseException], StoreError],
        lock_timeout: float,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._connect = connect
        self._begin = begin
        self._translate = translate
        self._lock_timeout = lock_timeout
        self._max_batch = max_batch
        self._conn: sqlite3.Connection | None = None
        #: One writer at a time runs on the writer connection.
        self._turn = threading.Lock()
        #: The thread holding ``_turn`` (a second write on that thread would wait for itself).
        self._holder: int | None = None
        self._waiting = 0
        self._count_lock = threading.Lock()
        self._batch: Batch | None = None

    # -- the writer connection ----------------------------------------------------------------
    @property
    def connection(self) -> sqlite3.Connection:
        """The connection every write runs on; made on first use."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    @property
    def waiting(self) -> int:
        """Writers queued for their turn now."""
        return self._waiting

    def holds_turn(self) -> bool:
        return self._holder == threading.get_ident()

    def forget_connection(self) -> None:
        """After ``fork`` or ``close``: the next write makes a new connection."""
        self._conn = None
        self._batch = None
        self._holder = None
        self._turn = threading.Lock()
        self._count_lock = threading.Lock()
        self._waiting = 0

    # -- one writer ---------------------------------------------------------------------------
    def enter(self) -> Member:
        """Wait for this thread's turn, then open a batch or join the open one."""
        if self.holds_turn():
            raise StoreError("a transaction is already open on this thread")
        # Uncontended (a single writer): take the turn at once, without counting a waiter.
        if not self._turn.acquire(blocking=False):
            with self._count_lock:
                self._waiting += 1
            try:
                got = self._turn.acquire(timeout=self._lock_timeout)
            finally:
                with self._count_lock:
                    self._waiting -= 1
            if not got:
                raise StoreError(
                    f"timed out after {self._lock_timeout} s waiting for this process's writers;"
                    " nothing was changed"
                )
        self._holder = threading.get_ident()
        try:
            conn = self.connection
            batch = self._batch
            if batch is None:
                self._begin(conn, time.monotonic() + self._lock_timeout)
                batch = self._batch = Batch()
                return Member(batch, first=True)
            conn.execute(f"SAVEPOINT {_SAVEPOINT}")
            return Member(batch, first=False)
        except BaseException as exc:
            # Nothing of this writer ran; an open batch stays for the others (committed below
            # when nobody waits), and this writer's failure is its own.
            self._pass_turn()
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from exc
            raise

    def leave(self, member: Member, ok: bool) -> None:
        """End this writer's work. ``ok``: keep it and return once its batch is committed
        (raising the batch's ``StoreError`` if the commit failed); else undo it."""
        batch = member.batch
        conn = self.connection
        try:
            if ok:
                if not member.first:
                    conn.execute(f"RELEASE {_SAVEPOINT}")
                batch.members += 1
            elif member.first:
                # The batch holds nobody else yet: undo it whole.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._end(batch, None)
            elif conn.in_transaction:
                conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                conn.execute(f"RELEASE {_SAVEPOINT}")
        except sqlite3.Error as exc:
            ok = False
            self._abort(batch, self._translate(exc))
        if self._batch is batch and not conn.in_transaction:
            # SQLite rolled the whole transaction back (an I/O error, a full disk): every
            # writer of the batch failed with it.
            self._abort(batch, StoreError("the write transaction was rolled back by SQLite"))
        self._pass_turn()
        if ok:
            self._await(batch)

    # -- batches ------------------------------------------------------------------------------
    def _pass_turn(self) -> None:
        """Give the turn to the next writer, or commit the open batch when nobody waits."""
        batch = self._batch
        # Reading the count needs no lock: a writer counted just after this read finds the
        # batch committed and opens the next one.
        if batch is not None and (not self._waiting or batch.members >= self._max_batch):
            self._commit(batch)
        self._holder = None
        self._turn.release()

    def _commit(self, batch: Batch) -> None:
        conn = self.connection
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abort(batch, self._translate(exc))
            return
        self._end(batch, None)

    def _abort(self, batch: Batch, error: StoreError) -> None:
        conn = self.connection
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:  # pragma: no cover - a broken connection: SQLite rolls back
            pass
        self._end(batch, error)

    def _end(self, batch: Batch, error: StoreError | None) -> None:
        if self._batch is batch:
            self._batch = None
        batch.end(error)

    def _await(self, batch: Batch) -> None:
        while not batch.wait(_ORPHAN_CHECK_S):
            # Normally the last writer of the batch commits it. Should the batch be left open
            # with nobody to take the turn, the first waiter that gets the turn commits it.
            if self._turn.acquire(blocking=False):
                self._holder = threading.get_ident()
                self._pass_turn()
        if batch.error is not None:
            raise batch.error
