"""The outbox of MemoryStore (docs/rules.md EO2): staged in the transaction's overlay like every
other change, published at commit, dropped on rollback."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from autumn_core.errors import StoreError, UniqueViolation
from autumn_core.outbound import OutboxEntry

#: A staged deletion (``purge_outbox``).
_GONE: Any = object()


class OutboxStorage:
    """Committed entries by event id (insertion order is id order: ids grow)."""

    def __init__(self) -> None:
        self.entries: dict[str, OutboxEntry] = {}


class OutboxOverlay:
    """The outbox methods of ``MemoryTransaction``; ``_outbox`` stages this transaction's
    entries, ``_outbox_committed`` is the store's."""

    _outbox: dict[str, OutboxEntry]
    _outbox_committed: OutboxStorage

    if TYPE_CHECKING:

        def _need_write(self) -> None: ...

        def _staged(self, name: str) -> Any: ...

    def _outbox_get(self, event_id: str) -> OutboxEntry | None:
        staged = self._outbox.get(event_id)
        if staged is _GONE:
            return None
        return staged if staged is not None else self._outbox_committed.entries.get(event_id)

    def append_outbox(self, entries: Sequence[OutboxEntry]) -> None:
        self._need_write()
        for entry in entries:
            if self._outbox_get(entry.id) is not None:
                raise UniqueViolation(f"outbox entry {entry.id!r} exists")
            self._staged("_outbox")[entry.id] = entry

    def due_outbox(self, now: datetime, limit: int) -> list[OutboxEntry]:
        ids = sorted(set(self._outbox_committed.entries) | set(self._outbox))
        out: list[OutboxEntry] = []
        for event_id in ids:
            entry = self._outbox_get(event_id)
            if entry is not None and entry.status == "pending" and entry.due_at <= now:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    def save_outbox(self, entry: OutboxEntry) -> None:
        self._need_write()
        if self._outbox_get(entry.id) is None:
            raise StoreError(f"outbox entry {entry.id!r} does not exist")
        self._staged("_outbox")[entry.id] = entry

    def list_outbox(
        self, *, status: str | None, limit: int, starting_after: str | None
    ) -> list[OutboxEntry]:
        ids = sorted(set(self._outbox_committed.entries) | set(self._outbox))
        out: list[OutboxEntry] = []
        for event_id in ids:
            if starting_after is not None and event_id <= starting_after:
                continue
            entry = self._outbox_get(event_id)
            if entry is not None and (status is None or entry.status == status):
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    def purge_outbox(self, before: datetime, limit: int) -> int:
        self._need_write()
        gone: list[str] = []
        for event_id in sorted(set(self._outbox_committed.entries) | set(self._outbox)):
            entry = self._outbox_get(event_id)
            if entry is not None and entry.status != "pending" and entry.due_at < before:
                gone.append(event_id)
                if len(gone) >= limit:
                    break
        for event_id in gone:
            self._staged("_outbox")[event_id] = _GONE
        return len(gone)

    def _publish_outbox(self) -> None:
        entries = self._outbox_committed.entries
        for event_id, entry in self._outbox.items():
            if entry is _GONE:
                entries.pop(event_id, None)
            else:
                entries[event_id] = entry
