"""The SQLite transaction's statements, and every record that is not the customer aggregate:
catalog versions, events, idempotency keys, unique claims, invoices and pending operations."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

from autumn_core.errors import StoreError, UniqueViolation
from autumn_core.model import (
    EventRecord,
    IdempotencyRecord,
    InvoiceRecord,
    PendingRecord,
    ProductVersionRecord,
)
from autumn_sqlite import codec
from autumn_sqlite.errors import translate

T = TypeVar("T")

#: An event takes its customer's next sequence number (a seek to the end of that customer's
#: range of the primary key, on the page the row is then written to).
_INSERT_EVENT: Final = (
    "INSERT INTO events (customer_pk, seq, id, feature_id, ts_us, value, data) VALUES"
    " (?1, (SELECT coalesce(max(seq), 0) + 1 FROM events WHERE customer_pk = ?1),"
    " ?2, ?3, ?4, ?5, ?6)"
)


def _event_params(e: EventRecord) -> tuple[Any, ...]:
    """The parameters of ``_INSERT_EVENT``: an event with nothing but a value, a feature and
    one time (a plain track) is all columns, without a document (schema version 5)."""
    ts = e.timestamp
    if (
        e.entity_id is None
        and e.event_name is None
        and not e.properties
        and (e.created_at is ts or e.created_at == ts)
    ):
        return (e.customer_pk, e.id, e.feature_id, codec.to_micros(ts), str(e.value), "")
    return (
        e.customer_pk,
        e.id,
        e.feature_id,
        codec.to_micros(ts),
        None,
        codec.encode_event(e, keyed=True),
    )


def _load_event(
    data: str, event_id: str, customer_pk: str, value: str | None, ts_us: int, feature_id: Any
) -> EventRecord:
    if data:
        return codec.load_event(data, event_id, customer_pk)
    ts = codec.from_micros(ts_us)
    return EventRecord(
        event_id, customer_pk, None, feature_id, None, Decimal(value or 0), {}, ts, ts
    )


class Records:
    """One transaction's connection and statement helpers (every SQL statement goes through
    them), and the records kept beside the customers."""

    def __init__(self, conn: sqlite3.Connection, write: bool) -> None:
        self._conn = conn
        self._write = write
        self._active = False

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if not self._active:
            raise StoreError("the transaction is not open")
        try:
            return self._conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if not self._active:
            raise StoreError("the transaction is not open")
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    def _decode(self, text: str, cls: type[T]) -> T:
        try:
            return codec.decode(text, cls)
        except Exception as exc:
            raise translate(exc) from exc

    def _need_write(self) -> None:
        if not self._write:
            raise StoreError("write attempted in a read transaction")
        if not self._active:
            raise StoreError("the transaction is not open")

    # -- catalog versions -------------------------------------------------------------------
    def load_product_versions(self) -> list[ProductVersionRecord]:
        rows = self._all("SELECT data FROM product_versions ORDER BY product_id, version")
        return [self._decode(r[0], ProductVersionRecord) for r in rows]

    def save_product_version(self, record: ProductVersionRecord) -> None:
        self._need_write()
        self._exec(
            "INSERT INTO product_versions (product_id, version, data) VALUES (?, ?, ?)"
            " ON CONFLICT (product_id, version) DO UPDATE SET data = excluded.data",
            (record.product_id, record.version, codec.encode(record)),
        )

    def product_version_in_use(self, product_id: str, version: int) -> bool:
        row = self._one(
            "SELECT 1 FROM customer_products WHERE product_id = ? AND version = ? LIMIT 1",
            (product_id, version),
        )
        return row is not None

    # -- events -----------------------------------------------------------------------------
    def append_events(self, events: Sequence[EventRecord]) -> None:
        self._need_write()
        if len(events) == 1:
            self._exec(_INSERT_EVENT, _event_params(events[0]))
            return
        self._many(_INSERT_EVENT, [_event_params(e) for e in events])

    def list_events(
        self,
        customer_pk: str,
        *,
        feature_id: str | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        starting_after: str | None,
    ) -> list[EventRecord]:
        sql = "SELECT data, id, value, ts_us, feature_id FROM events WHERE customer_pk = ?"
        params: list[Any] = [customer_pk]
        if starting_after is not None:
            # An id that is not one of this customer's events gives an empty page.
            sql += " AND seq > (SELECT seq FROM events WHERE customer_pk = ? AND id = ?)"
            params.extend((customer_pk, starting_after))
        if feature_id is not None:
            sql += " AND feature_id = ?"
            params.append(feature_id)
        if start is not None:
            sql += " AND ts_us >= ?"
            params.append(codec.to_micros(start))
        if end is not None:
            sql += " AND ts_us < ?"
            params.append(codec.to_micros(end))
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        rows = self._all(sql, params)
        try:
            return [_load_event(r[0], r[1], customer_pk, r[2], r[3], r[4]) for r in rows]
        except Exception as exc:
            raise translate(exc) from exc

    # -- idempotency ------------------------------------------------------------------------
    def get_idempotency(
        self, operation: str, customer_pk: str, key: str
    ) -> IdempotencyRecord | None:
        row = self._one(
            "SELECT data FROM idempotency WHERE operation = ? AND customer_pk = ? AND key = ?",
            (operation, customer_pk, key),
        )
        return None if row is None else self._decode(row[0], IdempotencyRecord)

    def put_idempotency(self, record: IdempotencyRecord, *, expired: datetime) -> None:
        self._need_write()
        ident = (record.operation, record.customer_pk, record.key)
        row = self._one(
            "SELECT created_us FROM idempotency"
            " WHERE operation = ? AND customer_pk = ? AND key = ?",
            ident,
        )
        if row is not None:
            if row[0] > codec.to_micros(expired):
                raise UniqueViolation(f"idempotency key {record.key!r} is in use")
            self._exec(
                "DELETE FROM idempotency WHERE operation = ? AND customer_pk = ? AND key = ?", ident
            )
        self._exec(
            "INSERT INTO idempotency (operation, customer_pk, key, created_us, data)"
            " VALUES (?, ?, ?, ?, ?)",
            (*ident, codec.to_micros(record.created_at), codec.encode(record)),
        )

    # -- trials, renewals, provider events ---------------------------------------------------
    def trial_claimed(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        if self._one(
            "SELECT 1 FROM trial_subject_claims"
            " WHERE product_id = ? AND customer_pk = ? AND entity_key = ?",
            (product_id, customer_pk, entity_id or ""),
        ):
            return True
        if fingerprint is None:
            return False
        row = self._one(
            "SELECT 1 FROM trial_fingerprint_claims WHERE product_id = ? AND fingerprint = ?",
            (product_id, fingerprint),
        )
        return row is not None

    def claim_trial(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        self._need_write()
        if self.trial_claimed(product_id, customer_pk, entity_id, fingerprint):
            return False
        # Both claims or neither: the savepoint undoes the first if the second is refused.
        self._exec("SAVEPOINT claim_trial")
        try:
            self._exec(
                "INSERT INTO trial_subject_claims (product_id, customer_pk, entity_key)"
                " VALUES (?, ?, ?)",
                (product_id, customer_pk, entity_id or ""),
            )
            if fingerprint is not None:
                self._exec(
                    "INSERT INTO trial_fingerprint_claims (product_id, fingerprint) VALUES (?, ?)",
                    (product_id, fingerprint),
                )
        except UniqueViolation:
            self._exec("ROLLBACK TO claim_trial")
            self._exec("RELEASE claim_trial")
            return False
        self._exec("RELEASE claim_trial")
        return True

    def claim_renewal(self, cp_instance_id: str, period_start: datetime) -> bool:
        self._need_write()
        cur = self._exec(
            "INSERT INTO renewal_markers (cp_instance_id, period_start_us) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            (cp_instance_id, codec.to_micros(period_start)),
        )
        return cur.rowcount == 1

    def claim_gateway_event(self, event_id: str) -> bool:
        self._need_write()
        cur = self._exec(
            "INSERT INTO gateway_events (event_id) VALUES (?) ON CONFLICT DO NOTHING", (event_id,)
        )
        return cur.rowcount == 1

    # -- invoices ---------------------------------------------------------------------------
    def save_invoice(self, invoice: InvoiceRecord) -> None:
        self._need_write()
        self._exec(
            "INSERT INTO invoices (id, customer_pk, gateway_invoice_id, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET customer_pk = excluded.customer_pk,"
            " gateway_invoice_id = excluded.gateway_invoice_id, data = excluded.data",
            (invoice.id, invoice.customer_pk, invoice.gateway_invoice_id, codec.encode(invoice)),
        )

    def get_invoice(self, invoice_id: str) -> InvoiceRecord | None:
        row = self._one("SELECT data FROM invoices WHERE id = ?", (invoice_id,))
        return None if row is None else self._decode(row[0], InvoiceRecord)

    def find_invoice_by_gateway_id(self, gateway_invoice_id: str) -> InvoiceRecord | None:
        row = self._one(
            "SELECT data FROM invoices WHERE gateway_invoice_id = ? ORDER BY seq LIMIT 1",
            (gateway_invoice_id,),
        )
        return None if row is None else self._decode(row[0], InvoiceRecord)

    def list_invoices(self, customer_pk: str) -> list[InvoiceRecord]:
        rows = self._all(
            "SELECT data FROM invoices WHERE customer_pk = ? ORDER BY seq", (customer_pk,)
        )
        return [self._decode(r[0], InvoiceRecord) for r in rows]

    # -- pending ----------------------------------------------------------------------------
    def put_pending(self, record: PendingRecord) -> None:
        self._need_write()
        data = codec.encode_pending(record)
        # A rewrite of a record's data alone names no indexed column (SQLite rewrites the index
        # entries of every column a SET names, changed or not).
        if self._exec(
            "UPDATE pending SET data = ? WHERE key = ? AND customer_pk = ? AND kind = ?",
            (data, record.key, record.customer_pk, record.kind),
        ).rowcount:
            return
        self._exec(
            "INSERT INTO pending (key, customer_pk, kind, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET customer_pk = excluded.customer_pk,"
            " kind = excluded.kind, data = excluded.data",
            (record.key, record.customer_pk, record.kind, data),
        )

    def insert_pending(self, record: PendingRecord) -> None:
        self._need_write()
        self._exec(
            "INSERT INTO pending (key, customer_pk, kind, data) VALUES (?, ?, ?, ?)",
            (record.key, record.customer_pk, record.kind, codec.encode_pending(record)),
        )

    def get_pending(self, key: str) -> PendingRecord | None:
        row = self._one("SELECT data FROM pending WHERE key = ?", (key,))
        return None if row is None else self._pending(row[0])

    def _pending(self, text: str) -> PendingRecord:
        try:
            return codec.decode_pending(text)
        except Exception as exc:
            raise translate(exc) from exc

    def delete_pending(self, key: str) -> None:
        self._need_write()
        self._exec("DELETE FROM pending WHERE key = ?", (key,))

    def list_pending(self, kind: str) -> list[PendingRecord]:
        rows = self._all("SELECT data FROM pending WHERE kind = ? ORDER BY key", (kind,))
        return [self._pending(r[0]) for r in rows]


__all__ = ["Records"]
