"""MemoryStore: the in-process store. Thread-safe, transactional, and fast.

Customers are immutable ``CustomerState`` objects, so a read transaction needs no lock: it sees
whatever objects were committed when it looked. A write transaction takes the store's lock for
its whole duration (writes are serialised), stages every change in an overlay, and publishes the
overlay at commit; an exception discards it, so a failed call leaves nothing behind.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

from autumn_core.changes import CustomerChange, customer_order, email_key
from autumn_core.errors import StoreError, UniqueViolation
from autumn_core.model import (
    CustomerState,
    EventRecord,
    IdempotencyRecord,
    InvoiceRecord,
    PendingRecord,
    ProductVersionRecord,
    saved_as,
)
from autumn_core.ports import StoreCapabilities
from autumn_memory.outbox import OutboxOverlay, OutboxStorage

_DELETED: Any = object()


class _Data:
    """The committed state. Replaced dict-by-dict only under the write lock."""

    def __init__(self) -> None:
        self.customers: dict[str, CustomerState] = {}
        self.by_id: dict[str, str] = {}
        self.idless_email: dict[str, str] = {}
        self.order: list[str] = []
        self.due: dict[str, datetime | None] = {}
        self.events: dict[str, list[EventRecord]] = {}
        self.event_index: dict[str, tuple[str, int]] = {}
        self.idempotency: dict[tuple[str, str, str], IdempotencyRecord] = {}
        self.trial_subject: set[tuple[str, str, str]] = set()
        self.trial_fingerprint: set[tuple[str, str]] = set()
        self.renewals: set[tuple[str, datetime]] = set()
        self.gateway_events: set[str] = set()
        self.invoices: dict[str, InvoiceRecord] = {}
        self.invoice_order: dict[str, list[str]] = {}
        self.pending: dict[str, PendingRecord] = {}
        self.versions: dict[tuple[str, int], ProductVersionRecord] = {}
        self.outbox = OutboxStorage()


#: Overlays most write transactions (a track) never write: made on first write
#: (``MemoryTransaction._staged``); until then the class's immutable empty one is read.
_LAZY: dict[str, type] = {
    "_idless": dict,
    "_new_order": list,
    "_idem": dict,
    "_trial_subject": set,
    "_trial_fp": set,
    "_renewals": set,
    "_gw_events": set,
    "_invoices": dict,
    "_versions": dict,
    "_deleted_customers": set,
    "_outbox": dict,
}
_NO_ENTRIES: Any = MappingProxyType({})
_NO_MEMBERS: Any = frozenset()
_NO_ITEMS: Any = ()


class MemoryTransaction(OutboxOverlay):
    # Overlays: key -> new value (or _DELETED). A read transaction stages nothing: it reads
    # the class's empty ones and allocates nothing.
    _customers: dict[str, Any] = _NO_ENTRIES
    _by_id: dict[str, Any] = _NO_ENTRIES
    _events: list[EventRecord] = _NO_ITEMS
    _idless: dict[str, Any] = _NO_ENTRIES
    _new_order: list[str] = _NO_ITEMS
    _idem: dict[tuple[str, str, str], IdempotencyRecord] = _NO_ENTRIES
    _trial_subject: set[tuple[str, str, str]] = _NO_MEMBERS
    _trial_fp: set[tuple[str, str]] = _NO_MEMBERS
    _renewals: set[tuple[str, datetime]] = _NO_MEMBERS
    _gw_events: set[str] = _NO_MEMBERS
    _invoices: dict[str, InvoiceRecord] = _NO_ENTRIES
    _pending: dict[str, Any] = _NO_ENTRIES
    _versions: dict[tuple[str, int], ProductVersionRecord] = _NO_ENTRIES
    _deleted_customers: set[str] = _NO_MEMBERS
    _outbox: dict[str, Any] = _NO_ENTRIES

    #: Whether a lazy overlay was made (``_staged``): commit publishes them only then.
    _rare = False

    def __init__(self, data: _Data, write: bool, lock: threading.RLock) -> None:
        self._d = data
        self._write = write
        self._lock = lock
        self._outbox_committed = data.outbox
        if write:  # what every write (a track) stages
            self._customers = {}
            self._by_id = {}
            self._events = []

    # The transaction is its own context manager (one object per call): a write holds the
    # store's lock from enter to exit and commits on a clean exit.
    def __enter__(self) -> MemoryTransaction:
        if self._write:
            self._lock.acquire()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._write:
            return
        try:
            if exc_type is None:
                self.commit()
        finally:
            self._lock.release()

    def _staged(self, name: str) -> Any:
        """This transaction's own overlay ``name`` (one of ``_LAZY``), made on first write."""
        mine = self.__dict__.get(name)
        if mine is None:
            mine = self.__dict__[name] = _LAZY[name]()
            self._rare = True
        return mine

    def _need_write(self) -> None:
        if not self._write:
            raise StoreError("write attempted in a read transaction")

    # -- catalog ----------------------------------------------------------------------------
    def load_product_versions(self) -> list[ProductVersionRecord]:
        merged = {**self._d.versions, **self._versions}
        return sorted(merged.values(), key=lambda r: (r.product_id, r.version))

    def save_product_version(self, record: ProductVersionRecord) -> None:
        self._need_write()
        self._staged("_versions")[(record.product_id, record.version)] = record

    def product_version_in_use(self, product_id: str, version: int) -> bool:
        for pk in self._all_pks():
            state = self.load_customer(pk)
            if state and any(
                p.product_id == product_id and p.version == version for p in state.products
            ):
                return True
        return False

    # -- customers --------------------------------------------------------------------------
    def _all_pks(self) -> list[str]:
        pks = [pk for pk in self._d.order if pk not in self._deleted_customers]
        return [*pks, *self._new_order]

    def customer_pk(self, customer_id: str) -> str | None:
        pk = self._by_id.get(customer_id, None)
        if pk is _DELETED:
            return None
        if pk is not None:
            return pk  # type: ignore[no-any-return]
        return self._d.by_id.get(customer_id)

    def customers_by_email(self, email: str) -> list[CustomerState]:
        low = email_key(email)
        found = []
        for pk in self._all_pks():
            state = self.load_customer(pk)
            if state is not None and state.email is not None and email_key(state.email) == low:
                found.append(state)
        found.sort(key=customer_order)
        return found

    def load_customer(self, pk: str, *, for_update: bool = False) -> CustomerState | None:
        state = self._customers.get(pk)
        if state is _DELETED:
            return None
        if state is not None:
            return state  # type: ignore[no-any-return]
        return self._d.customers.get(pk)

    def _check_unique(self, state: CustomerState, previous: CustomerState | None) -> None:
        if state.id is not None:
            owner = self.customer_pk(state.id)
            if owner is not None and owner != state.pk:
                raise UniqueViolation(f"customer id {state.id!r} is taken")
        elif state.email is not None:
            owner = self._idless_owner(email_key(state.email))
            if owner is not None and owner != state.pk:
                raise UniqueViolation(f"an id-less customer with email {state.email!r} exists")

    def _idless_owner(self, low: str) -> str | None:
        v = self._idless.get(low, None)
        if v is _DELETED:
            return None
        if v is not None:
            return v  # type: ignore[no-any-return]
        return self._d.idless_email.get(low)

    def _index(self, before: CustomerState | None, after: CustomerState | None) -> None:
        if before is not None:
            if before.id is not None:
                self._by_id[before.id] = _DELETED
            elif before.email is not None:
                self._staged("_idless")[email_key(before.email)] = _DELETED
        if after is not None:
            if after.id is not None:
                self._by_id[after.id] = after.pk
            elif after.email is not None:
                self._staged("_idless")[email_key(after.email)] = after.pk

    def insert_customer(self, state: CustomerState) -> None:
        self._need_write()
        if self.load_customer(state.pk) is not None:
            raise UniqueViolation(f"customer pk {state.pk!r} exists")
        self._check_unique(state, None)
        self._customers[state.pk] = attrs.evolve(state, version=1)
        self._staged("_new_order").append(state.pk)
        self._index(None, state)

    def save_customer(self, change: CustomerChange) -> None:
        self._need_write()
        after = change.state
        before = self.load_customer(after.pk)
        if before is None:
            raise StoreError(f"cannot save customer {after.pk!r}: it does not exist")
        renamed = before.email != after.email or before.id != after.id
        if renamed:  # an unchanged id and email are still its own
            self._check_unique(after, before)
        self._customers[after.pk] = saved_as(after, before.version + 1)
        if renamed:
            self._index(before, after)

    def delete_customer(self, pk: str) -> None:
        self._need_write()
        state = self.load_customer(pk)
        if state is None:
            return
        self._index(state, None)
        self._customers[pk] = _DELETED
        self._staged("_deleted_customers").add(pk)
        if pk in self._new_order:
            self._staged("_new_order").remove(pk)
        self._events = [e for e in self._events if e.customer_pk != pk]
        self._idem = {k: v for k, v in self._idem.items() if k[1] != pk}
        self._trial_subject = {c for c in self._trial_subject if c[1] != pk}
        self._invoices = {k: v for k, v in self._invoices.items() if v.customer_pk != pk}

    def list_customers(
        self, *, limit: int, starting_after: str | None, email: str | None
    ) -> list[CustomerState]:
        states = [s for s in (self.load_customer(pk) for pk in self._all_pks()) if s is not None]
        states.sort(key=customer_order)
        if starting_after is not None:
            # The page starts after that customer's place in the full order, whether or not it
            # matches the email filter; an unknown pk starts from the beginning.
            keys = [s.pk for s in states]
            if starting_after in keys:
                states = states[keys.index(starting_after) + 1 :]
        if email is not None:
            low = email_key(email)
            states = [s for s in states if s.email is not None and email_key(s.email) == low]
        return states[:limit]

    def due_customer_pks(self, now: datetime, limit: int | None) -> list[str]:
        pks = []
        for pk in self._all_pks():
            state = self.load_customer(pk)
            if state is None:
                continue
            due = state.due_at
            if due is not None and due <= now:
                pks.append(pk)
                if limit is not None and len(pks) >= limit:
                    break
        return pks

    # -- events -----------------------------------------------------------------------------
    def append_events(self, events: Sequence[EventRecord]) -> None:
        self._need_write()
        self._events.extend(events)

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
        committed = (
            [] if customer_pk in self._deleted_customers else self._d.events.get(customer_pk, [])
        )
        events = list(committed) + [e for e in self._events if e.customer_pk == customer_pk]
        if starting_after is not None:
            ids = [e.id for e in events]
            events = events[ids.index(starting_after) + 1 :] if starting_after in ids else []
        out = []
        for e in events:
            if feature_id is not None and e.feature_id != feature_id:
                continue
            if start is not None and e.timestamp < start:
                continue
            if end is not None and e.timestamp >= end:
                continue
            out.append(e)
            if len(out) >= limit:
                break
        return out

    # -- idempotency ------------------------------------------------------------------------
    def get_idempotency(
        self, operation: str, customer_pk: str, key: str
    ) -> IdempotencyRecord | None:
        k = (operation, customer_pk, key)
        rec = self._idem.get(k)
        if rec is not None:
            return rec
        if customer_pk in self._deleted_customers:
            return None
        return self._d.idempotency.get(k)

    def put_idempotency(self, record: IdempotencyRecord, *, expired: datetime) -> None:
        self._need_write()
        existing = self.get_idempotency(record.operation, record.customer_pk, record.key)
        if existing is not None and existing.created_at > expired:
            raise UniqueViolation(f"idempotency key {record.key!r} is in use")
        self._staged("_idem")[(record.operation, record.customer_pk, record.key)] = record

    # -- unique claims ----------------------------------------------------------------------
    def trial_claimed(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        subject = (product_id, customer_pk, entity_id or "")
        if subject in self._trial_subject or (
            subject in self._d.trial_subject and customer_pk not in self._deleted_customers
        ):
            return True
        if fingerprint is not None:
            fp = (product_id, fingerprint)
            return fp in self._trial_fp or fp in self._d.trial_fingerprint
        return False

    def claim_trial(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        self._need_write()
        if self.trial_claimed(product_id, customer_pk, entity_id, fingerprint):
            return False
        self._staged("_trial_subject").add((product_id, customer_pk, entity_id or ""))
        if fingerprint is not None:
            self._staged("_trial_fp").add((product_id, fingerprint))
        return True

    def claim_renewal(self, cp_instance_id: str, period_start: datetime) -> bool:
        self._need_write()
        key = (cp_instance_id, period_start)
        if key in self._renewals or key in self._d.renewals:
            return False
        self._staged("_renewals").add(key)
        return True

    def claim_gateway_event(self, event_id: str) -> bool:
        self._need_write()
        if event_id in self._gw_events or event_id in self._d.gateway_events:
            return False
        self._staged("_gw_events").add(event_id)
        return True

    # -- invoices ---------------------------------------------------------------------------
    def save_invoice(self, invoice: InvoiceRecord) -> None:
        self._need_write()
        self._staged("_invoices")[invoice.id] = invoice

    def get_invoice(self, invoice_id: str) -> InvoiceRecord | None:
        return self._invoices.get(invoice_id) or self._d.invoices.get(invoice_id)

    def find_invoice_by_gateway_id(self, gateway_invoice_id: str) -> InvoiceRecord | None:
        for inv in [*self._invoices.values(), *self._d.invoices.values()]:
            if inv.gateway_invoice_id == gateway_invoice_id:
                return self.get_invoice(inv.id)
        return None

    def list_invoices(self, customer_pk: str) -> list[InvoiceRecord]:
        ids = (
            []
            if customer_pk in self._deleted_customers
            else list(self._d.invoice_order.get(customer_pk, []))
        )
        ids += [
            i
            for i, inv in self._invoices.items()
            if inv.customer_pk == customer_pk and i not in ids
        ]
        return [inv for inv in (self.get_invoice(i) for i in ids) if inv is not None]

    # -- pending ----------------------------------------------------------------------------
    def put_pending(self, record: PendingRecord) -> None:
        self._need_write()
        self._pending_overlay()[record.key] = record

    def insert_pending(self, record: PendingRecord) -> None:
        self._need_write()
        key = record.key
        if self.get_pending(key) is not None:
            raise UniqueViolation(f"pending key {key!r} is taken")
        self._pending_overlay()[key] = record

    def _pending_overlay(self) -> dict[str, Any]:
        """The pending overlay, made on first write. Unlike the other lazy overlays it does
        not mark the transaction rare: a reserve and a settle write one record each, and the
        commit publishes pending records on their own."""
        mine = self.__dict__.get("_pending")
        if mine is None:
            mine = self.__dict__["_pending"] = {}
        return mine

    def get_pending(self, key: str) -> PendingRecord | None:
        v = self._pending.get(key)
        if v is _DELETED:
            return None
        return v if v is not None else self._d.pending.get(key)

    def delete_pending(self, key: str) -> None:
        self._need_write()
        self._pending_overlay()[key] = _DELETED

    def list_pending(self, kind: str) -> list[PendingRecord]:
        keys = set(self._d.pending) | set(self._pending)
        out = [self.get_pending(k) for k in sorted(keys)]
        return [r for r in out if r is not None and r.kind == kind]

    # -- commit -----------------------------------------------------------------------------
    def commit(self) -> None:
        d = self._d
        rare = self._rare  # the lazy overlays change on few calls (a track writes none)
        if rare and self._deleted_customers:
            self._commit_deletions(d)
        for pk, state in self._customers.items():
            if state is not _DELETED:
                d.customers[pk] = state
        if self._new_order:
            d.order.extend(self._new_order)
        for k, v in self._by_id.items():
            if v is _DELETED:
                d.by_id.pop(k, None)
            else:
                d.by_id[k] = v
        for k, v in self._idless.items():
            if v is _DELETED:
                d.idless_email.pop(k, None)
            else:
                d.idless_email[k] = v
        for e in self._events:
            d.events.setdefault(e.customer_pk, []).append(e)
        if self._pending:
            for k, v in self._pending.items():
                if v is _DELETED:
                    d.pending.pop(k, None)
                else:
                    d.pending[k] = v
        if rare:
            self._commit_records(d)

    def _commit_deletions(self, d: _Data) -> None:
        for pk in self._deleted_customers:
            d.customers.pop(pk, None)
            d.events.pop(pk, None)
            for e_id in [k for k, v in d.event_index.items() if v[0] == pk]:
                del d.event_index[e_id]
            d.idempotency = {k: v for k, v in d.idempotency.items() if k[1] != pk}
            d.trial_subject = {c for c in d.trial_subject if c[1] != pk}
            for inv_id in d.invoice_order.pop(pk, []):
                d.invoices.pop(inv_id, None)
            if pk in d.order:
                d.order.remove(pk)

    def _commit_records(self, d: _Data) -> None:
        if self._idem:
            d.idempotency.update(self._idem)
        if self._trial_subject:
            d.trial_subject |= self._trial_subject
        if self._trial_fp:
            d.trial_fingerprint |= self._trial_fp
        if self._renewals:
            d.renewals |= self._renewals
        if self._gw_events:
            d.gateway_events |= self._gw_events
        for inv_id, inv in self._invoices.items():
            if inv_id not in d.invoices:
                d.invoice_order.setdefault(inv.customer_pk, []).append(inv_id)
            d.invoices[inv_id] = inv
        if self._versions:
            d.versions.update(self._versions)
        self._publish_outbox()


class MemoryStore:
    """The in-memory store: a real product for development, tests and single-process apps.

    Example:
        ```python
        billing = Autumn(catalog, store=MemoryStore())
        ```
    """

    capabilities = StoreCapabilities(multi_process=False, durable=False)

    def __init__(self) -> None:
        self._data = _Data()
        self._lock = threading.RLock()
        self._closed = False
        # A read transaction stages nothing and keeps no state of its own: one serves every
        # reader (and every thread) of the store.
        self._reading = MemoryTransaction(self._data, False, self._lock)

    def transaction(self, *, write: bool = True) -> MemoryTransaction:
        """A context manager running one transaction; a write holds the store's lock.

        Example:
            ```python
            with store.transaction(write=False) as tx:
                states = tx.list_customers(limit=10, starting_after=None, email=None)
            ```
        """
        if self._closed:
            raise StoreError("the store is closed")
        return MemoryTransaction(self._data, True, self._lock) if write else self._reading

    def close(self) -> None:
        """Close the store; later calls raise ``StoreError``.

        Example:
            ```python
            store.close()
            ```
        """
        self._closed = True

    def __repr__(self) -> str:
        return "MemoryStore()"
