"""The PostgreSQL transaction's records beside the customers: catalog versions, events,
idempotency keys, unique claims, invoices and pending operations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from autumn_core.errors import UniqueViolation
from autumn_core.model import (
    EventRecord,
    IdempotencyRecord,
    InvoiceRecord,
    PendingRecord,
    ProductVersionRecord,
)
from autumn_postgres import codec, sql
from autumn_postgres.errors import translated
from autumn_postgres.session import Session


class Records(Session):
    # -- catalog versions -----------------------------------------------------------------------
    @translated
    def load_product_versions(self) -> list[ProductVersionRecord]:
        rows = self._all("SELECT data FROM autumn_product_versions ORDER BY product_id, version")
        return [codec.structure(sql.doc(r[0]), ProductVersionRecord) for r in rows]

    @translated
    def save_product_version(self, record: ProductVersionRecord) -> None:
        self._need_write()
        self._fire(
            "INSERT INTO autumn_product_versions (product_id, version, created_at, data)"
            " VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (product_id, version) DO UPDATE"
            " SET created_at = excluded.created_at, data = excluded.data",
            (record.product_id, record.version, record.created_at, codec.encode(record)),
        )

    @translated
    def product_version_in_use(self, product_id: str, version: int) -> bool:
        row = self._one(
            "SELECT EXISTS (SELECT 1 FROM autumn_customer_products"
            " WHERE product_id = %s AND version = %s)",
            (product_id, version),
        )
        return row is not None and row[0] == "t"

    # -- events -------------------------------------------------------------------------------
    @translated
    def append_events(self, events: Sequence[EventRecord]) -> None:
        self._need_write()
        if not events:
            return
        if len(events) == 1:
            e = events[0]
            params = {
                "id": e.id,
                "pk": e.customer_pk,
                "entity": e.entity_id,
                "feature": e.feature_id,
                "name": e.event_name,
                "value": e.value,
                "ts": e.timestamp,
                "created": e.created_at,
                "data": codec.encode(e),
            }
            self._wire.fire(sql.W_EVENT, params)
            return
        self._wire.fire(sql.W_EVENTS, {"events": codec.encode(list(events))})

    @translated
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
        rows = self._all(
            sql.LIST_EVENTS,
            {
                "pk": customer_pk,
                "feature": feature_id,
                "start": start,
                "end": end,
                "after": starting_after,
                "limit": limit,
            },
        )
        return [codec.structure(sql.doc(r[0]), EventRecord) for r in rows]

    # -- idempotency --------------------------------------------------------------------------
    @translated
    def get_idempotency(
        self, operation: str, customer_pk: str, key: str
    ) -> IdempotencyRecord | None:
        row = self._one(
            "SELECT data FROM autumn_idempotency"
            " WHERE operation = %s AND customer_pk = %s AND key = %s",
            (operation, customer_pk, key),
        )
        return None if row is None else codec.structure(sql.doc(row[0]), IdempotencyRecord)

    @translated
    def put_idempotency(self, record: IdempotencyRecord, *, expired: datetime) -> None:
        self._need_write()
        row = self._one(
            sql.PUT_IDEMPOTENCY,
            (
                record.operation,
                record.customer_pk,
                record.key,
                record.created_at,
                codec.encode(record),
                expired,
            ),
        )
        if row is None:
            raise UniqueViolation(f"idempotency key {record.key!r} is in use")

    # -- unique claims ------------------------------------------------------------------------
    @translated
    def trial_claimed(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        row = self._one(
            sql.TRIAL_CLAIMED,
            {
                "product": product_id,
                "pk": customer_pk,
                "entity": entity_id or "",
                "fp": fingerprint,
            },
        )
        return row is not None and row[0] == "t"

    @translated
    def claim_trial(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        self._need_write()
        params = {
            "product": product_id,
            "pk": customer_pk,
            "entity": entity_id or "",
            "fp": fingerprint,
        }
        subject, by_fp = (int(v or 0) for v in self._one(sql.CLAIM_TRIAL, params))
        if subject and (fingerprint is None or by_fp):
            return True
        # One of the two was claimed already: undo the half this statement inserted (no other
        # transaction can see it yet), so a refused claim inserts nothing.
        if subject:
            self._fire(
                "DELETE FROM autumn_trial_subject_claims"
                " WHERE product_id = %(product)s AND customer_pk = %(pk)s"
                " AND entity_key = %(entity)s",
                params,
            )
        if by_fp:
            self._fire(
                "DELETE FROM autumn_trial_fingerprint_claims"
                " WHERE product_id = %(product)s AND fingerprint = %(fp)s",
                params,
            )
        return False

    @translated
    def claim_renewal(self, cp_instance_id: str, period_start: datetime) -> bool:
        self._need_write()
        row = self._one(
            "INSERT INTO autumn_renewal_markers (cp_instance_id, period_start) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            (cp_instance_id, period_start),
        )
        return row is not None

    @translated
    def claim_gateway_event(self, event_id: str) -> bool:
        self._need_write()
        row = self._one(
            "INSERT INTO autumn_gateway_events (event_id) VALUES (%s)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            (event_id,),
        )
        return row is not None

    # -- invoices -----------------------------------------------------------------------------
    @translated
    def save_invoice(self, invoice: InvoiceRecord) -> None:
        self._need_write()
        self._fire(
            sql.SAVE_INVOICE,
            (
                invoice.id,
                invoice.customer_pk,
                invoice.gateway_invoice_id,
                invoice.status,
                invoice.total,
                invoice.currency,
                invoice.created_at,
                codec.encode(invoice),
            ),
        )

    @translated
    def get_invoice(self, invoice_id: str) -> InvoiceRecord | None:
        row = self._one("SELECT data FROM autumn_invoices WHERE id = %s", (invoice_id,))
        return None if row is None else codec.structure(sql.doc(row[0]), InvoiceRecord)

    @translated
    def find_invoice_by_gateway_id(self, gateway_invoice_id: str) -> InvoiceRecord | None:
        row = self._one(
            "SELECT data FROM autumn_invoices WHERE gateway_invoice_id = %s ORDER BY seq LIMIT 1",
            (gateway_invoice_id,),
        )
        return None if row is None else codec.structure(sql.doc(row[0]), InvoiceRecord)

    @translated
    def list_invoices(self, customer_pk: str) -> list[InvoiceRecord]:
        rows = self._all(
            "SELECT data FROM autumn_invoices WHERE customer_pk = %s ORDER BY seq",
            (customer_pk,),
        )
        return [codec.structure(sql.doc(r[0]), InvoiceRecord) for r in rows]

    # -- pending ------------------------------------------------------------------------------
    @translated
    def put_pending(self, record: PendingRecord) -> None:
        self._need_write()
        self._fire(
            "INSERT INTO autumn_pending (key, customer_pk, kind, created_at, data)"
            " VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (key) DO UPDATE"
            " SET customer_pk = excluded.customer_pk, kind = excluded.kind,"
            " created_at = excluded.created_at, data = excluded.data",
            (
                record.key,
                record.customer_pk,
                record.kind,
                record.created_at,
                codec.encode_pending(record),
            ),
        )

    @translated
    def insert_pending(self, record: PendingRecord) -> None:
        self._need_write()
        # Sent with the writes (no round trip): a taken key fails the commit.
        self._fire(
            "INSERT INTO autumn_pending (key, customer_pk, kind, created_at, data)"
            " VALUES (%s, %s, %s, %s, %s::jsonb)",
            (
                record.key,
                record.customer_pk,
                record.kind,
                record.created_at,
                codec.encode_pending(record),
            ),
        )

    @translated
    def get_pending(self, key: str) -> PendingRecord | None:
        row = self._one("SELECT data FROM autumn_pending WHERE key = %s", (key,))
        return None if row is None else codec.decode_pending(sql.doc_text(row[0]))

    @translated
    def delete_pending(self, key: str) -> None:
        self._need_write()
        self._fire("DELETE FROM autumn_pending WHERE key = %s", (key,))

    @translated
    def list_pending(self, kind: str) -> list[PendingRecord]:
        rows = self._all("SELECT data FROM autumn_pending WHERE kind = %s ORDER BY key", (kind,))
        return [codec.decode_pending(sql.doc_text(r[0])) for r in rows]


__all__ = ["Records"]
