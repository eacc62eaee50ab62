"""The parsed-customer cache of the SQL stores.

A ``CustomerState`` is parsed once per committed version: an entry maps a customer's pk to
what the store needs to recognise that version (its row's ``seq`` and ``version``) and the
parsed state. Entries a write transaction produced are *staged* and published only after its
COMMIT (a rollback drops them); read transactions see committed rows and put at once. Reads
take no lock (a dict read is atomic); writes take one. Bounded: past ``size`` entries the
oldest quarter is dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

E = TypeVar("E")


class ParseCache(Generic[E]):
    """pk -> entry, bounded; ``newer(old, new)`` may refuse to replace a newer entry."""

    def __init__(self, size: int, newer: Callable[[E, E], bool] | None = None) -> None:
        self.size = max(0, int(size))
        self._entries: dict[str, E] = {}
        self._lock = threading.Lock()
        self._newer = newer

    def get(self, pk: str) -> E | None:
        return self._entries.get(pk)

    def put(self, pk: str, entry: E) -> None:
        if not self.size:
            return
        with self._lock:
            entries = self._entries
            old = entries.get(pk)
            if old is not None and self._newer is not None and self._newer(old, entry):
                return  # a slow reader racing a writer never puts an older version back
            entries.pop(pk, None)
            entries[pk] = entry
            if len(entries) > self.size:
                for stale in list(entries)[: max(1, len(entries) // 4)]:
                    del entries[stale]

    def drop(self, pk: str) -> None:
        with self._lock:
            self._entries.pop(pk, None)

    def publish(self, staged: Mapping[str, E | None]) -> None:
        """After a COMMIT: what the transaction wrote is now committed (None: deleted)."""
        for pk, entry in staged.items():
            if entry is None:
                self.drop(pk)
            else:
                self.put(pk, entry)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def reset_lock(self) -> None:
        """In a forked child: the parent's lock may have been held at fork time."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["ParseCache"]
