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
to lead the next batch. A write nobody took within ``lock_timeout`` is taken back and fails
unapplied, as a writer waiting that long for the turn does; an interrupt (Ctrl-C) stays with
the thread it hit, and whatever happens the turn is given back.

**Syncing outside the turn** (``sync``, ``autumn_sqlite.walsync``): with ``synchronous="FULL"``
the writer connection commits as ``NORMAL`` does and the batch's committer syncs the WAL file
after passing the turn on, so the next batch runs during the sync; the batch's writers return
only after it.
Another connection may read a committed batch during its sync (a power failure in that window
loses a change no writer was told was made). A failed sync fails its batch and every later
write of the store: what was committed since can no longer be promised durable.
"""

from __future__ import annotations

import contextlib
import contextvars
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from autumn_core.errors import StoreError
from autumn_sqlite.batches import Batch, Job, Member, Work
from autumn_sqlite.walsync import WalSync

#: Writers per batch, at most: bounds how long the first writer of a batch waits for its
#: result, and the size of one transaction.
MAX_BATCH: Final = 64
#: How long a finished writer waits for its batch's commit before it looks whether the batch
#: was left without a committer (a writer that gave up its turn unexpectedly).
_ORPHAN_CHECK_S: Final = 0.05
_SAVEPOINT: Final = "autumn_writer"


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
        self._begin = begin
        self._translate = translate
        self._lock_timeout = lock_timeout
        self._max_batch = max_batch
        #: With ``sync`` (the connection commits without making it durable), committed batches
        #: are synced after the turn is passed on (``autumn_sqlite.walsync``).
        self._wal: WalSync[Batch] | None = None if sync is None else WalSync(sync, self._end)
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
        if self._wal is not None:
            self._wal.forget()

    def _refuse(self) -> None:
        if self.holds_turn():
            raise StoreError("a transaction is already open on this thread")
        if self._wal is not None and self._wal.broken is not None:
            raise self._wal.broken

    def _timed_out(self) -> StoreError:
        return StoreError(
            f"timed out after {self._lock_timeout} s waiting for this process's writers;"
            " nothing was changed"
        )

    # -- one writer ---------------------------------------------------------------------------
    def enter(self) -> Member:
        """Wait for this thread's turn, then open a batch or join the open one."""
        self._refuse()
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
                raise self._timed_out()
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
        try:
            if ok:
                try:
                    if not member.first:
                        self.connection.execute(f"RELEASE {_SAVEPOINT}")
                    batch.members += 1
                except sqlite3.Error as exc:
                    ok = False
                    self._abort(batch, self._translate(exc))
                self._check_alive(batch)
            else:
                self._undo(batch, member.first)
        finally:
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
        self._refuse()
        deadline = time.monotonic() + self._lock_timeout
        if self._turn.acquire(blocking=False):
            # Uncontended: this thread runs its own work first, then whatever is queued.
            job = Job(work, None, deadline)
            self._jobs.appendleft(job)
        else:
            job = Job(work, contextvars.copy_context(), deadline)
            self._jobs.append(job)
            # Taken again after queueing: the holder may have passed the turn on meanwhile
            # (it hands it to a queued job only after releasing it).
            if not self._turn.acquire(blocking=False):
                return self._outcome(job)
        self._holder = threading.get_ident()
        self._pass_turn()
        return self._outcome(job)

    def _outcome(self, job: Job) -> Any:
        try:
            gave_up = self._wait(job)
        except BaseException:
            # An interrupt while waiting: a job not taken yet is given up (nothing of it runs);
            # one taken is waited for, so that it is not applied behind its caller's back.
            if self._unqueue(job):
                self._hand_lead()
            else:
                self._wait_settled(job)
            raise
        if gave_up:
            raise self._timed_out()
        if job.error is not None:
            raise job.error
        batch = job.batch
        assert batch is not None
        if batch.error is not None:
            raise batch.error
        return job.result

    def _wait(self, job: Job) -> bool:
        """Until the job's outcome is known; True: it was given up, never run (its deadline
        passed while it was queued)."""
        while True:
            while not job.latch.acquire(timeout=_ORPHAN_CHECK_S):
                if self._look_after(job):
                    return True
            if not job.lead:
                return False
            # Woken to lead: run the queue (this job is in it, or another leader took it).
            if self._turn.acquire(timeout=max(0.0, job.deadline - time.monotonic())):
                self._holder = threading.get_ident()
                self._pass_turn()
            elif self._unqueue(job):
                self._hand_lead()
                return True
            with self._signal_lock:
                if self._settled(job):
                    return False
                # Still running, or in a batch not committed yet: wait to be signalled again.
                job.signalled = job.lead = False

    def _look_after(self, job: Job) -> bool:
        """An owner not signalled for a while: give up a job past its deadline that nobody
        took (True); finish jobs or a batch left with nobody holding the turn."""
        if time.monotonic() > job.deadline and self._unqueue(job):
            self._hand_lead()
            return True
        if self._turn.acquire(blocking=False):
            self._holder = threading.get_ident()
            self._pass_turn()
        return False

    @staticmethod
    def _settled(job: Job) -> bool:
        batch = job.batch
        return job.error is not None or (batch is not None and batch.ended)

    def _wait_settled(self, job: Job) -> None:
        while not self._settled(job):
            time.sleep(_ORPHAN_CHECK_S / 10)
            if self._turn.acquire(blocking=False):
                self._holder = threading.get_ident()
                self._pass_turn()

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
        (writers woken by the last commit come back one by one), up to ``max_batch``. An
        interrupt of this thread is returned, to be raised once the turn is passed on."""
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
                self._commit(batch)
                batch = self._batch
            first = batch is None
            try:
                conn = self.connection
                if batch is None:
                    self._refuse_broken()
                    self._begin(conn, job.deadline)
                    batch = self._batch = Batch()
                else:
                    conn.execute(f"SAVEPOINT {_SAVEPOINT}")
            except Exception as exc:
                job.error = self._translate(exc) if isinstance(exc, sqlite3.Error) else exc
                self._signal(job)
                continue
            except BaseException as exc:
                return self._interrupted(job, batch, first=False, exc=exc)
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
                return self._interrupted(job, batch, first=first, exc=exc)
            try:
                if not first:
                    conn.execute(f"RELEASE {_SAVEPOINT}")
                batch.members += 1
                batch.jobs.append(job)
            except sqlite3.Error as exc:
                job.error = self._translate(exc)
                self._signal(job)
                self._abort(batch, self._translate(exc))
            self._check_alive(batch)
        return None

    def _refuse_broken(self) -> None:
        if self._wal is not None and self._wal.broken is not None:
            raise self._wal.broken

    def _interrupted(
        self, job: Job, batch: Batch | None, *, first: bool, exc: BaseException
    ) -> BaseException:
        """A KeyboardInterrupt (or SystemExit) is this thread's, not the job's owner's: the
        job fails as undone, and the interrupt goes on once the turn is passed."""
        job.error = StoreError(f"the write was interrupted ({exc!r}); nothing was changed")
        if batch is not None and job.batch is batch:
            self._undo(batch, first)
        elif self._batch is None and self._conn is not None:
            # Interrupted in its BEGIN: no batch holds the transaction, if one was opened.
            with contextlib.suppress(sqlite3.Error):
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
        self._signal(job)
        return exc

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
        self._check_alive(batch)

    def _check_alive(self, batch: Batch) -> None:
        """SQLite may roll the whole transaction back (an I/O error, a full disk, a closed
        connection): every writer of the batch then failed with it."""
        if self._batch is not batch:
            return
        try:
            alive = self.connection.in_transaction
        except sqlite3.Error:
            alive = False
        if not alive:
            self._abort(batch, StoreError("the write transaction was rolled back by SQLite"))

    # -- batches ------------------------------------------------------------------------------
    def _pass_turn(self) -> None:
        """Run the queued jobs, then give the turn to the next writer, or commit the open
        batch when nobody waits; a job queued meanwhile gets a leader. Whatever happens, the
        turn is given back, and committed batches are synced and answered."""
        interrupt = None
        try:
            if self._jobs:
                interrupt = self._drain()
            batch = self._batch
            # Reading the count needs no lock: a writer counted just after this read finds the
            # batch committed and opens the next one.
            if batch is not None and (not self._waiting or batch.members >= self._max_batch):
                self._commit(batch)
        except BaseException as exc:
            # Unforeseen (an interrupt between statements, a connection closed under the
            # batch): the open batch fails whole, with every writer in it.
            batch = self._batch
            if batch is not None:
                self._abort(batch, StoreError(f"the write transaction failed ({exc!r})"))
            raise
        finally:
            self._holder = None
            self._turn.release()
            if self._jobs:
                self._hand_lead()
            if self._wal is not None and self._wal.pending:
                self._wal.settle()
        if interrupt is not None:
            raise interrupt

    def _commit(self, batch: Batch) -> None:
        """COMMIT the batch, and end it (with a WAL sync to make, once the turn is passed)."""
        conn = self.connection
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abort(batch, self._translate(exc))
            return
        if self._wal is None:
            self._end(batch, None)
            return
        if self._batch is batch:
            self._batch = None
        self._wal.committed(batch)

    def _abort(self, batch: Batch, error: StoreError) -> None:
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):  # a broken connection: SQLite rolls back
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        self._end(batch, error)

    def _end(self, batch: Batch, error: StoreError | None) -> None:
        if self._batch is batch:
            self._batch = None
        if batch.ended:
            return
        # Emptied: a job refers to its batch, and a cycle would be left to the collector.
        jobs, batch.jobs = batch.jobs, []
        if error is None:
            # Before anyone wakes: the committed states are in the cache when they return.
            for job in jobs:
                if job.publish is not None:
                    job.publish()
        batch.end(error)
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
