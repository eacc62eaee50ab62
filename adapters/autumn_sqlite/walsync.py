"""Making committed batches durable outside the writer's turn (``synchronous="FULL"``).

In WAL mode, what ``FULL`` adds to ``NORMAL`` is one sync of the WAL file after each commit.
Group commit (``autumn_sqlite.group``) commits as ``NORMAL`` and has the batch's committer
call ``settle`` once it has passed the turn on, so the next batch runs during the sync; the
batch's writers are answered only after it.

- **One sync covers every batch committed before it started** (a sync flushes the whole
  file), so syncs are serialised and numbered by commit: a committer that finds its batch
  already covered returns at once.
- **A failed sync breaks the store.** Linux reports a writeback error once per open file, and
  the WAL's later frames are worthless to recovery once an earlier one is lost: so the failed
  sync fails every batch committed and not yet answered, and every later write is refused
  (``broken``) until the store is reopened.
- **An interrupt** (Ctrl-C landing in the thread that syncs) does not leave writers waiting:
  the sync is made once more for them, and the interrupt goes on.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from autumn_core.errors import StoreError

B = TypeVar("B")


class WalSync(Generic[B]):
    """The committed batches (``B``) waiting for their sync, and the syncs themselves."""

    def __init__(self, sync: Callable[[], None], end: Callable[[B, StoreError | None], None]):
        self._sync = sync
        #: Answers a batch's writers (committed and durable: None; else the error).
        self._end = end
        self._lock = threading.Lock()
        #: (commit number, batch), in commit order; appended under the writer's turn.
        self._pending: deque[tuple[int, B]] = deque()
        self._commits = 0
        #: Set by a failed sync: nothing committed since can be promised durable.
        self.broken: StoreError | None = None

    def forget(self) -> None:
        """In a forked child: the parent's batches and lock are not this process's."""
        self._lock = threading.Lock()
        self._pending = deque()

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def committed(self, batch: B) -> None:
        """Under the writer's turn, right after ``COMMIT``: ``batch`` waits for a sync."""
        self._commits += 1
        self._pending.append((self._commits, batch))

    def settle(self) -> None:
        """Outside the turn: sync, then answer every batch committed before the sync began
        (all of them, failed, if it failed)."""
        with self._lock:
            if not self._pending:
                return  # a sync made since this caller's commit covered it
            covered = self._commits
            error = self.broken
            try:
                if error is None:
                    error = self._attempt()
            except BaseException:
                # Interrupted: the writers waiting for this sync still get a true answer.
                try:
                    error = self._attempt()
                except BaseException:
                    error = self._break("the sync was interrupted twice")
                raise
            finally:
                pending = self._pending
                while pending and (error is not None or pending[0][0] <= covered):
                    self._end(pending.popleft()[1], error)

    def _attempt(self) -> StoreError | None:
        try:
            self._sync()
        except OSError as exc:
            return self._break(str(exc))
        return None

    def _break(self, reason: str) -> StoreError:
        self.broken = StoreError(
            f"the disk failed to sync a commit ({reason}); writes made since may not be"
            " durable: reopen the store"
        )
        return self.broken
