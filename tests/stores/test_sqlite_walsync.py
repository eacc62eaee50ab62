"""The WAL syncs of group commit (``autumn_sqlite.walsync``): one sync answers every batch
committed before it began; a failed sync fails every batch waiting and breaks the store; an
interrupted sync is made again before the interrupt goes on."""

from __future__ import annotations

import errno

import pytest

from autumn_core.errors import StoreError
from autumn_sqlite.walsync import WalSync


class Disk:
    """A sync that counts its calls and fails or is interrupted as told, once each."""

    def __init__(self) -> None:
        self.syncs = 0
        self.fail_next: BaseException | None = None

    def sync(self) -> None:
        self.syncs += 1
        failure, self.fail_next = self.fail_next, None
        if failure is not None:
            raise failure


def walsync() -> tuple[WalSync[str], Disk, dict[str, StoreError | None]]:
    disk = Disk()
    answers: dict[str, StoreError | None] = {}
    wal: WalSync[str] = WalSync(disk.sync, lambda batch, error: answers.update({batch: error}))
    return wal, disk, answers


def test_one_sync_answers_every_batch_committed_before_it() -> None:
    """Given two batches committed, when the first committer settles, then one sync answers
    both, and the second committer's settle syncs nothing more."""
    wal, disk, answers = walsync()
    wal.committed("a")
    wal.committed("b")
    # when
    wal.settle()
    wal.settle()
    # then
    assert disk.syncs == 1
    assert answers == {"a": None, "b": None}
    assert not wal.pending


def test_a_failed_sync_fails_every_waiting_batch_and_every_later_one() -> None:
    """Given two batches committed and a disk that fails the next sync, when one settles,
    then both are answered with the failure and the store is broken; a batch committed later
    is answered with the same failure without a sync."""
    wal, disk, answers = walsync()
    wal.committed("a")
    wal.committed("b")
    disk.fail_next = OSError(errno.EIO, "Input/output error")
    # when
    wal.settle()
    # then
    assert isinstance(answers["a"], StoreError) and "failed to sync" in str(answers["a"])
    assert answers["b"] is answers["a"] is wal.broken
    wal.committed("c")
    wal.settle()
    assert answers["c"] is wal.broken
    assert disk.syncs == 1


def test_an_interrupted_sync_is_made_again_before_the_interrupt_goes_on() -> None:
    """Given a batch committed and a sync interrupted (Ctrl-C in the syncing thread), when
    it settles, then the sync is made again, the batch is answered as durable, and the
    interrupt is raised."""
    wal, disk, answers = walsync()
    wal.committed("a")
    disk.fail_next = KeyboardInterrupt()
    # when / then
    with pytest.raises(KeyboardInterrupt):
        wal.settle()
    assert disk.syncs == 2
    assert answers == {"a": None}
    assert wal.broken is None
