"""The outbox table of SqliteStore (docs/rules.md EO2): written by the transaction that makes
the change it reports. A write transaction holds SQLite's one writer lock, so two deliverers
never take the same entry at once."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from autumn_core.errors import StoreError
from autumn_core.outbound import OutboxEntry
from autumn_sqlite import codec

#: Schema version 4: the outbox. ``due_us`` is the next attempt's time, indexed for pending
#: entries only: delivered and dead entries are never scanned by a deliverer.
V4: tuple[str, ...] = (
    """
    CREATE TABLE outbox (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        due_us INTEGER NOT NULL,
        data TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX outbox_due ON outbox (due_us, id) WHERE status = 'pending'",
    "CREATE INDEX outbox_status ON outbox (status, id)",
)


class OutboxTable:
    """The outbox methods of ``SqliteTransaction``."""

    if TYPE_CHECKING:

        def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor: ...
        def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
        def _need_write(self) -> None: ...

    def append_outbox(self, entries: Sequence[OutboxEntry]) -> None:
        self._need_write()
        for entry in entries:
            self._exec(
                "INSERT INTO outbox (id, status, due_us, data) VALUES (?, ?, ?, ?)",
                (entry.id, entry.status, codec.to_micros(entry.due_at), entry.to_json()),
            )

    def due_outbox(self, now: datetime, limit: int) -> list[OutboxEntry]:
        rows = self._all(
            "SELECT data FROM outbox WHERE status = 'pending' AND due_us <= ? ORDER BY id LIMIT ?",
            (codec.to_micros(now), limit),
        )
        return [OutboxEntry.from_json(r[0]) for r in rows]

    def save_outbox(self, entry: OutboxEntry) -> None:
        self._need_write()
        cur = self._exec(
            "UPDATE outbox SET status = ?, due_us = ?, data = ? WHERE id = ?",
            (entry.status, codec.to_micros(entry.due_at), entry.to_json(), entry.id),
        )
        if cur.rowcount != 1:
            raise StoreError(f"outbox entry {entry.id!r} does not exist")

    def list_outbox(
        self, *, status: str | None, limit: int, starting_after: str | None
    ) -> list[OutboxEntry]:
        rows = self._all(
            "SELECT data FROM outbox WHERE (? IS NULL OR status = ?) AND id > ?"
            " ORDER BY id LIMIT ?",
            (status, status, starting_after or "", limit),
        )
        return [OutboxEntry.from_json(r[0]) for r in rows]

    def purge_outbox(self, before: datetime, limit: int) -> int:
        self._need_write()
        cur = self._exec(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status <> 'pending'"
            " AND due_us < ? ORDER BY id LIMIT ?)",
            (codec.to_micros(before), limit),
        )
        return int(cur.rowcount)
