"""The outbox table of PostgresStore (docs/rules.md EO2): written by the transaction that makes
the change it reports. A deliverer's write transaction locks the entries it takes with
``FOR UPDATE SKIP LOCKED``, so concurrent deliverers (threads, processes, hosts) share the work
instead of sending the same entry twice or waiting on each other."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from autumn_core.errors import StoreError
from autumn_core.outbound import OutboxEntry
from autumn_postgres.errors import translated
from autumn_postgres.session import Session

#: Schema version 2: the outbox. ``due_at`` is the next attempt's time, indexed for pending
#: entries only: delivered and dead entries are never scanned by a deliverer.
V2: tuple[str, ...] = (
    """
    CREATE TABLE autumn_outbox (
        id text PRIMARY KEY,
        status text NOT NULL,
        due_at timestamptz NOT NULL,
        data text NOT NULL
    )
    """,
    "CREATE INDEX autumn_outbox_due ON autumn_outbox (due_at, id) WHERE status = 'pending'",
    "CREATE INDEX autumn_outbox_status ON autumn_outbox (status, id)",
)


class OutboxTable(Session):
    """The outbox methods of ``PostgresTransaction``."""

    @translated
    def append_outbox(self, entries: Sequence[OutboxEntry]) -> None:
        self._need_write()
        for entry in entries:
            self._fire(
                "INSERT INTO autumn_outbox (id, status, due_at, data) VALUES (%s, %s, %s, %s)",
                (entry.id, entry.status, entry.due_at, entry.to_json()),
            )

    @translated
    def due_outbox(self, now: datetime, limit: int) -> list[OutboxEntry]:
        lock = " FOR UPDATE SKIP LOCKED" if self._write else ""
        rows = self._all(
            "SELECT data FROM autumn_outbox WHERE status = 'pending' AND due_at <= %s"
            f" ORDER BY id LIMIT %s{lock}",
            (now, limit),
        )
        return [OutboxEntry.from_json(r[0]) for r in rows]

    @translated
    def save_outbox(self, entry: OutboxEntry) -> None:
        self._need_write()
        row = self._one(
            "UPDATE autumn_outbox SET status = %s, due_at = %s, data = %s WHERE id = %s"
            " RETURNING 1",
            (entry.status, entry.due_at, entry.to_json(), entry.id),
        )
        if row is None:
            raise StoreError(f"outbox entry {entry.id!r} does not exist")

    @translated
    def list_outbox(
        self, *, status: str | None, limit: int, starting_after: str | None
    ) -> list[OutboxEntry]:
        rows = self._all(
            "SELECT data FROM autumn_outbox WHERE (%s::text IS NULL OR status = %s::text)"
            " AND id > %s ORDER BY id LIMIT %s",
            (status, status, starting_after or "", limit),
        )
        return [OutboxEntry.from_json(r[0]) for r in rows]

    @translated
    def purge_outbox(self, before: datetime, limit: int) -> int:
        self._need_write()
        row = self._one(
            "WITH gone AS (DELETE FROM autumn_outbox WHERE id IN (SELECT id FROM autumn_outbox"
            " WHERE status <> 'pending' AND due_at < %s ORDER BY id LIMIT %s) RETURNING 1)"
            " SELECT count(*) FROM gone",
            (before, limit),
        )
        return int(row[0])
