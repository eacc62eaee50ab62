"""The records of group commit (``autumn_sqlite.group``): a batch, a writer's place in it, and a
handed-over write."""

from __future__ import annotations

import contextvars
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from autumn_core.errors import StoreError


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
        "deadline",
        "error",
        "latch",
        "lead",
        "publish",
        "result",
        "signalled",
        "work",
    )

    def __init__(self, work: Work, context: contextvars.Context | None, deadline: float) -> None:
        self.work = work
        #: The owner's context, for work run on another thread (None: run by its owner).
        self.context = context
        #: ``time.monotonic()`` after which the job, if not run yet, is given up (``lock_timeout``).
        self.deadline = deadline
        self.batch: Batch | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.publish: Callable[[], None] | None = None
        self.lead = False
        self.signalled = False
        self.latch = threading.Lock()
        self.latch.acquire()
