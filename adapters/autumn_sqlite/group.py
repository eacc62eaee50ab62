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

**Handed-over writes** (``run``, what the engine's use cases use): on a machine with few cores
the rate of many writing threads is bound by thread switches, not disk syncs, and a writer
that waits for the turn to run its own work switches twice per write (the turn, then the
commit). A handed-over write is queued instead, and whoever holds the turn runs it in its
savepoint of the open batch, in the owner's ``contextvars`` context; the owner sleeps once,
until its outcome is known. When nobody holds the turn the owner takes it and runs its own
work, then the queue. A holder passing the turn on wakes the owner of the first queued write
to lead the next batch.

**Syncing outside the turn** (``sync``): with ``synchronous="FULL"`` the writer connection
commits as ``NORMAL`` does and the batch's committer syncs the WAL file itself after passing
the turn on, so the next batch runs during the sync; the batch's writers return only after it.
Another connection may read a committed batch during its sync (a power failure in that window
loses a change no writer was told was made). A failed sync fails its batch and every later
write of the store: what was committed since can no longer be promised durable.
"""

from __future__ import annotations

import contextvars
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

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

    __slots__ = ("_latch", "ended", "error", "jobs", "members")

    def __init__(self) -> None:
        self.members = 0
        #: The jobs (``GroupCommit.run``) whose work is in this batch, in the order they ran.
        self.jobs: list[Job] = []
        self.ended = False
        self.error: StoreError | None = None
        self._latch = threading.Lock()
        self._latch.acquire()

    def end(self, error: StoreError | None) -> bool:
        """The batch committed (``error`` None) or failed; wakes every waiter. Whether it
        ended now (not before)."""
        if self.ended:
            return False
        self.error = error
        self.ended = True
        self._latch.release()
        return True

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


#: A job's work: given the writer connection and its place in the batch, run the write and
#: return its result and what to do once the batch is committed (publish what it wrote).
Work = Callable[[sqlite3.Connection, Member], tuple[Any, Callable[[], None]]]


class Job:
    """One write handed to whoever holds the turn (``GroupCommit.run``).

    Its owner sleeps on ``latch`` (a lock released exactly once, see ``GroupCommit._signal``):
    either its outcome is known (its work failed, or its batch ended), or ``lead`` is set and
    the owner must take the turn and run the queued jobs itself."""

    __slots__ = (
        "batch",
        "context",
        "error",
        "latch",
        "lead",
        "publish",
        "result",
        "signalled",
        "work",
    )

    def __init__(self, work: Work, context: contextvars.Context | None) -> None:
        self.work = work
        #: The owner's context, for work run on another thread (None: run by its owner).
        self.context = context
        self.batch: Batch | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.publish: Callable[[], None] | None = None
        self.lead = False
        self.signalled = False
        self.latch = threading.Lock()
        self.latch.acquire()


class GroupCommit:
    """The writers of one store in one process (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        begin: Callable[[sqlite3.Connection, float], None],
        translate: Callable[[BaseException], StoreError],
        lock_timeout: float,
        max_batch: int = MAX_BATCH,
        sync: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        #: Makes the last commit durable, when the connection commits without doing so: run
        #: after the turn is passed on, so the next batch runs while this one syncs.
        self._sync = sync
        #: Set once a sync failed: nothing written after it can be promised durable.
        self._broken: StoreError | None = None
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
        #: Writes handed over to be run by whoever holds the turn (``run``).
        self._jobs: deque[Job] = deque()
        self._signal_lock = threading.Lock()

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

    @property
    def queued(self) -> int:
        """Jobs (``run``) waiting for a holder of the turn to run them now."""
        return len(self._jobs)

    def holds_turn(self) -> bool:
        return self._holder == threading.get_ident()

    def forget_connection(self) -> None:
        """After ``fork`` or ``close``: the next write makes a new connection."""
        self._conn = None
        self._batch = None
        self._holder = None
        self._turn = threading.Lock()
        self._count_lock = threading.Lock()
        self._signal_lock = threading.Lock()
        self._waiting = 0
        self._jobs = deque()

    # -- one writer ---------------------------------------------------------------------------
    def enter(self) -> Member:
        """Wait for this thread's turn, then open a batch or join the open one."""
        if self.holds_turn():
            raise StoreError("a transaction is already open on this thread")
        if self._broken is not None:
            raise self._broken
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
        if ok:
            try:
                if not member.first:
                    conn.execute(f"RELEASE {_SAVEPOINT}")
                batch.members += 1
            except sqlite3.Error as exc:
                ok = False
                self._abort(batch, self._translate(exc))
            if self._batch is batch and not conn.in_transaction:
                self._abort(batch, StoreError("the write transaction was rolled back by SQLite"))
        else:
            self._undo(batch, member.first)
        self._pass_turn()
        if ok:
            self._await(batch)

    # -- handed-over writes -------------------------------------------------------------------
    def run(self, work: Work) -> Any:
        """Run ``work`` in a batch; return its result once the batch is committed.

        A writer that waits for the turn to run its own work costs two thread switches per
        write (the turn handed over, then the commit), and on a machine with few cores those
        switches, not disk syncs, bound the rate. Here the work is queued and whoever holds
        the turn runs it in its own savepoint of the open batch (in the owner's
        ``contextvars`` context), so the owner sleeps once, until its outcome is known. When
        nobody holds the turn, the owner takes it and runs the queue itself."""
        if self.holds_turn():
            raise StoreError("a transaction is already open on this thread")
        if self._broken is not None:
            raise self._broken
        if self._turn.acquire(blocking=False):
            # Uncontended: this thread runs its own work first, then whatever is queued.
            job = Job(work, None)
            self._jobs.appendleft(job)
        else:
            job = Job(work, contextvars.copy_context())
            self._jobs.append(job)
            # Taken again after queueing: the holder may have passed the turn on meanwhile
            # (it hands it to a queued job only after releasing it).
            if not self._turn.acquire(blocking=False):
                return self._outcome(job)
        self._holder = threading.get_ident()
        self._pass_turn()
        return self._outcome(job)

    def _outcome(self, job: Job) -> Any:
        while True:
            while not job.latch.acquire(timeout=_ORPHAN_CHECK_S):
                # Jobs or a batch left with nobody holding the turn: take it and finish them.
                if self._turn.acquire(blocking=False):
                    self._holder = threading.get_ident()
                    self._pass_turn()
            if not job.lead:
                break
            # Woken to lead: run the queue (this job is in it, or another leader took it).
            if self._turn.acquire(timeout=self._lock_timeout):
                self._holder = threading.get_ident()
                self._pass_turn()
            elif self._unqueue(job):
                raise StoreError(
                    f"timed out after {self._lock_timeout} s waiting for this process's writers;"
                    " nothing was changed"
                )
            with self._signal_lock:
                batch = job.batch
                if job.error is not None or (batch is not None and batch.ended):
                    break
                # Still running, or in a batch not committed yet: wait to be signalled again.
                job.signalled = job.lead = False
        if job.error is not None:
            raise job.error
        batch = job.batch
        assert batch is not None
        if batch.error is not None:
            raise batch.error
        return job.result

    def _unqueue(self, job: Job) -> bool:
        try:
            self._jobs.remove(job)
        except ValueError:
            return False
        return True

    def _signal(self, job: Job, *, lead: bool = False) -> None:
        """Wake a job's owner, once per wait: with its outcome, or (``lead``) to lead."""
        with self._signal_lock:
            if job.signalled:
                return
            job.signalled = True
            job.lead = lead
        job.latch.release()

    def _hand_lead(self) -> None:
        """The turn is free and jobs are queued: the owner of the first one leads."""
        try:
            job = self._jobs[0]
        except IndexError:
            return
        self._signal(job, lead=True)

    def _drain(self) -> BaseException | None:
        """With the turn: run queued jobs, each in its savepoint of the open batch (a full
        batch is committed and the next one opened), including the ones queued while it runs
        (writers woken by the last commit come back one by one), up to ``max_batch``."""
        conn = self.connection
        jobs = self._jobs
        for _ in range(self._max_batch):
            # Tested first: a raised IndexError costs more than the rest of an empty turn.
            if not jobs:
                return None
            try:
                job = jobs.popleft()
            except IndexError:  # an owner that timed out took its job back meanwhile
                return None
            batch = self._batch
            if batch is not None and batch.members >= self._max_batch:
                if self._commit(batch):
                    self._synced(batch)
                batch = self._batch
            first = batch is None
            try:
                if batch is None:
                    self._begin(conn, time.monotonic() + self._lock_timeout)
                    batch = self._batch = Batch()
                else:
                    conn.execute(f"SAVEPOINT {_SAVEPOINT}")
            except BaseException as exc:
                job.error = self._translate(exc) if isinstance(exc, sqlite3.Error) else exc
                self._signal(job)
                continue
            job.batch = batch
            try:
                member = Member(batch, first)
                context = job.context
                job.result, job.publish = (
                    job.work(conn, member)
                    if context is None
                    else context.run(job.work, conn, member)
                )
            except Exception as exc:
                job.error = exc
                self._undo(batch, first)
                self._signal(job)
                continue
            except BaseException as exc:
                # A KeyboardInterrupt (or SystemExit) is this thread's, not the job's owner's:
                # the job fails as undone, and the interrupt goes on once the turn is passed.
                job.error = StoreError(f"the write was interrupted ({exc!r}); nothing was changed")
                self._undo(batch, first)
                self._signal(job)
                return exc
            try:
                if not first:
                    conn.execute(f"RELEASE {_SAVEPOINT}")
                batch.members += 1
                batch.jobs.append(job)
            except sqlite3.Error as exc:
                job.error = self._translate(exc)
                self._signal(job)
                self._abort(batch, self._translate(exc))
            if self._batch is batch and not conn.in_transaction:
                self._abort(batch, StoreError("the write transaction was rolled back by SQLite"))
        return None

    def _undo(self, batch: Batch, first: bool) -> None:
        """A writer's work failed: undo its statements (the whole batch, if it opened it and
        so the batch holds nobody else yet)."""
        conn = self.connection
        try:
            if first:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._end(batch, None)
            elif conn.in_transaction:
                conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                conn.execute(f"RELEASE {_SAVEPOINT}")
        except sqlite3.Error as exc:
            self._abort(batch, self._translate(exc))
        if self._batch is batch and not conn.in_transaction:
            # SQLite rolled the whole transaction back (an I/O error, a full disk): every
            # writer of the batch failed with it.
            self._abort(batch, StoreError("the write transaction was rolled back by SQLite"))

    # -- batches ------------------------------------------------------------------------------
    def _pass_turn(self) -> None:
        """Run the queued jobs, then give the turn to the next writer, or commit the open
        batch when nobody waits; a job queued meanwhile gets a leader."""
        interrupt = self._drain() if self._jobs else None
        batch = self._batch
        unsynced = None
        # Reading the count needs no lock: a writer counted just after this read finds the
        # batch committed and opens the next one.
        if (
            batch is not None
            and (not self._waiting or batch.members >= self._max_batch)
            and self._commit(batch)
        ):
            unsynced = batch
        self._holder = None
        self._turn.release()
        if self._jobs:
            self._hand_lead()
        if unsynced is not None:
            self._synced(unsynced)
        if interrupt is not None:
            raise interrupt

    def _commit(self, batch: Batch) -> bool:
        """COMMIT the batch; whether it still has to be synced (``_synced``)."""
        conn = self.connection
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abort(batch, self._translate(exc))
            return False
        if self._sync is None:
            self._end(batch, None)
            return False
        if self._batch is batch:
            self._batch = None
        return True

    def _synced(self, batch: Batch) -> None:
        """Sync a committed batch, then end it: its writers return once it is durable."""
        assert self._sync is not None
        try:
            self._sync()
        except OSError as exc:
            self._broken = StoreError(
                f"the disk failed to sync a commit ({exc}); writes made since may not be"
                " durable: reopen the store"
            )
            self._end(batch, self._broken)
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
        if batch.end(error) and batch.jobs:
            # Emptied: a job refers to its batch, and a cycle would be left to the collector.
            jobs, batch.jobs = batch.jobs, []
            if error is None:
                # Before the owners wake: the committed states are in the cache when they
                # return.
                for job in jobs:
                    if job.publish is not None:
                        job.publish()
            for job in jobs:
                self._signal(job)

    def _await(self, batch: Batch) -> None:
        while not batch.wait(_ORPHAN_CHECK_S):
            # Normally the last writer of the batch commits it. Should the batch be left open
            # with nobody to take the turn, the first waiter that gets the turn commits it.
            if self._turn.acquire(blocking=False):
                self._holder = threading.get_ident()
                self._pass_turn()
        if batch.error is not None:
            raise batch.error
