"""Ports: what the core needs from the outside world, as ``typing.Protocol`` s.

- ``Store``: durable state. Every public call runs in one ``transaction``; a write transaction
  is scoped to one customer (plus the shared unique tables: trial claims, idempotency keys,
  renewal markers, gateway event ids) and is serialised against other writes to that customer.
- ``Gateway``: the payment provider.
- ``Clock`` lives in ``autumn_core.clock``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypeVar, runtime_checkable

import attrs

from autumn_core.changes import CustomerChange
from autumn_core.clock import Clock
from autumn_core.model import (
    CustomerState,
    EventRecord,
    IdempotencyRecord,
    InvoiceRecord,
    PendingRecord,
    ProductVersionRecord,
)
from autumn_core.outbound import OutboxEntry
from autumn_core.results import GatewayEvent

T = TypeVar("T")


@attrs.frozen
class StoreCapabilities:
    """What a store can do, so shared contract tests pick by capability, not by backend name."""

    #: Several OS processes may open the same store at once.
    multi_process: bool = False
    #: Data survives closing and reopening the store.
    durable: bool = False


class StoreTransaction(Protocol):
    """One unit of work. Leaving the ``with`` block normally commits; an exception rolls back."""

    # -- catalog versions -------------------------------------------------------------------
    def load_product_versions(self) -> list[ProductVersionRecord]: ...

    def save_product_version(self, record: ProductVersionRecord) -> None:
        """Insert or replace the (product_id, version) definition."""

    def product_version_in_use(self, product_id: str, version: int) -> bool: ...

    # -- customers ----------------------------------------------------------------------------
    def customer_pk(self, customer_id: str) -> str | None: ...

    def customers_by_email(self, email: str) -> list[CustomerState]:
        """Every customer whose email matches case-insensitively (``changes.email_key``), in
        ``list_customers`` order."""

    def load_customer(self, pk: str, *, for_update: bool = False) -> CustomerState | None:
        """``for_update`` locks the customer until the transaction ends (write transactions)."""

    def insert_customer(self, state: CustomerState) -> None:
        """Raises ``UniqueViolation`` when the id, or an id-less email, is taken."""

    def save_customer(self, change: CustomerChange) -> None:
        """Persist ``change.state``, the core having taken the difference
        (``CustomerChange.between(before, after)``).

        A store that holds the customer at ``change.base_version`` may write only what the
        change lists; at any other version (a stale ``before``) it writes ``change.state``
        whole. The stored version becomes ``base_version + 1`` (larger, in any case), and the
        due time ``due_customer_pks`` reads becomes ``change.due_at``. Raises
        ``UniqueViolation`` when a new id, or a new id-less email, is taken.
        """

    def delete_customer(self, pk: str) -> None:
        """Remove the customer and everything under it except fingerprint trial claims."""

    def list_customers(
        self, *, limit: int, starting_after: str | None, email: str | None
    ) -> list[CustomerState]:
        """Ordered by ``changes.customer_order``: (created_at, id, pk), id-less customers after
        those with an id created at the same instant, ids by code point, pk only ordering
        id-less customers among themselves (docs/rules.md C11).

        ``starting_after`` is a customer *pk*: the page starts after that customer's place in
        this order, whether or not it matches ``email`` (a pk that does not exist starts from
        the beginning). ``email`` matches case-insensitively.
        """

    def due_customer_pks(self, now: datetime, limit: int | None) -> list[str]:
        """Customers whose due time (``state.due_at`` at insert, ``change.due_at`` at save) is
        <= now."""

    # -- events -------------------------------------------------------------------------------
    def append_events(self, events: Sequence[EventRecord]) -> None: ...

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
        """Oldest first (insertion order); ``starting_after`` is an event id."""

    # -- idempotency --------------------------------------------------------------------------
    def get_idempotency(
        self, operation: str, customer_pk: str, key: str
    ) -> IdempotencyRecord | None: ...

    def put_idempotency(self, record: IdempotencyRecord, *, expired: datetime) -> None:
        """Insert, replacing an existing record only when it has expired: when it was created at
        or before ``expired`` (the core decides the lifetime, 24 h before ``created_at``).

        Raises ``UniqueViolation`` when a live record holds the key.
        """

    # -- trials, renewals, provider events (store-enforced uniqueness) -------------------------
    def claim_trial(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        """Insert the per-subject claim and, with a fingerprint, the per-fingerprint claim.

        Returns False (inserting nothing) when either already exists.
        """

    def trial_claimed(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool: ...

    def claim_renewal(self, cp_instance_id: str, period_start: datetime) -> bool: ...

    def claim_gateway_event(self, event_id: str) -> bool: ...

    # -- invoices -----------------------------------------------------------------------------
    def save_invoice(self, invoice: InvoiceRecord) -> None:
        """Insert or replace by id."""

    def get_invoice(self, invoice_id: str) -> InvoiceRecord | None: ...

    def find_invoice_by_gateway_id(self, gateway_invoice_id: str) -> InvoiceRecord | None: ...

    def list_invoices(self, customer_pk: str) -> list[InvoiceRecord]: ...

    # -- pending plans (checkout, in-flight gateway operations) -------------------------------
    def put_pending(self, record: PendingRecord) -> None: ...

    def insert_pending(self, record: PendingRecord) -> None:
        """Insert a record under a key that must be new: ``UniqueViolation`` when a record holds
        the key (a store may find out only when the transaction commits; nothing is written)."""

    def get_pending(self, key: str) -> PendingRecord | None: ...

    def delete_pending(self, key: str) -> None: ...

    def list_pending(self, kind: str) -> list[PendingRecord]: ...

    # -- the outbox (docs/rules.md EO2-EO4) -----------------------------------------------------
    def append_outbox(self, entries: Sequence[OutboxEntry]) -> None:
        """Insert new entries; they exist exactly when this transaction commits."""

    def due_outbox(self, now: datetime, limit: int) -> list[OutboxEntry]:
        """Pending entries due by ``now`` (``OutboxEntry.due_at``), oldest event first. In a
        write transaction they are locked against other deliverers until it ends (a concurrent
        deliverer skips them rather than waits)."""

    def save_outbox(self, entry: OutboxEntry) -> None:
        """Replace the delivery state of an existing entry (by event id)."""

    def list_outbox(
        self, *, status: str | None, limit: int, starting_after: str | None
    ) -> list[OutboxEntry]:
        """Oldest event first; ``starting_after`` is an event id."""

    def purge_outbox(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` delivered or dead entries settled (``due_at``) before
        ``before``; return how many. Pending entries are never deleted."""


class Store(Protocol):
    capabilities: StoreCapabilities

    def transaction(self, *, write: bool = True) -> AbstractContextManager[StoreTransaction]:
        """A read transaction sees one consistent snapshot; a write transaction is serialised."""

    def close(self) -> None: ...


class OptimisticStore(Store, Protocol):
    """A store that can also run a write transaction that reads customers *without* locking
    them and refuses, at ``save_customer``, a customer that another transaction saved since it
    was read (a retryable ``StoreError``). Short hot calls (``track``) use it first: a lock is
    then held only while the save runs, not while the engine decides. The core looks for the
    method (``getattr``); a store without it runs every write the usual way."""

    def optimistic_transaction(self) -> AbstractContextManager[StoreTransaction]: ...


class PendingWithCustomer(Protocol):
    """A store transaction that can read a pending record and its customer at once:
    ``balances.finalize`` reads a lock's index record, then locks and loads the customer it
    names. The core looks for the method (``getattr``); without it, it calls ``get_pending``
    and ``load_customer``."""

    def get_pending_locking_customer(self, key: str) -> PendingRecord | None:
        """``get_pending``; in a write transaction the record's customer is also locked and
        read, so that the ``load_customer(record.customer_pk, for_update=True)`` that follows
        costs no further trip to the store."""


class CombiningStore(Store, Protocol):
    """A store that runs a write itself, so that it may run the writes of many threads in one
    of its transactions (group commit): ``fn`` runs once, on this thread or on another one
    (in this thread's ``contextvars`` context), and its result or exception is this call's,
    returned once its transaction is committed. The core looks for the method (``getattr``)
    and uses it for the first attempt of a write that is not optimistic."""

    def run_write(self, fn: Callable[[StoreTransaction], T]) -> T: ...


# -- the payment provider ---------------------------------------------------------------------


@attrs.frozen
class ChargeLine:
    description: str
    amount: Decimal
    product_id: str | None = None
    feature_id: str | None = None
    quantity: Decimal = Decimal(1)


@attrs.frozen
class RecurringPrice:
    """A fixed recurring price of a product on the customer's cycle (for subscriptions)."""

    product_id: str
    feature_id: str | None
    unit_amount: Decimal
    quantity: Decimal
    interval: str
    interval_count: int


#: Why the engine moves money; lets a gateway tell a renewal (that a provider subscription may
#: bill by itself) from a first charge or a switch without guessing from amounts.
CHARGE_REASONS = (
    "attach",
    "renewal",
    "switch",
    "seats",
    "quantity",
    "cancel",
    "conversion",
    "auto_topup",
)


@attrs.frozen
class ChargeRequest:
    gateway_customer_id: str
    invoice_id: str
    lines: tuple[ChargeLine, ...]
    total: Decimal
    currency: str
    #: Derived from the engine's operation id and persisted before the call (in a pending
    #: operation record), so a retry after a crash sends the same key: a gateway must return
    #: the first outcome for a key it has seen instead of charging again.
    idempotency_key: str
    description: str = ""
    #: The customer's recurring fixed prices after this change (a gateway may keep a
    #: subscription in step with it); None when unchanged.
    recurring: tuple[RecurringPrice, ...] | None = None
    metadata: dict[str, str] = attrs.field(factory=dict)
    #: One of ``CHARGE_REASONS``.
    reason: str = "attach"
    #: The end of the period the lines pay for (a trial's end for a $0 trialing start): when a
    #: provider subscription created now should first bill by itself. None when unknown.
    period_end: datetime | None = None


@attrs.frozen
class ChargeOutcome:
    #: "paid", "failed" or "requires_action" (the customer must complete a checkout).
    status: str
    gateway_invoice_id: str | None = None
    checkout_url: str | None = None
    message: str = ""
    #: Product id -> the provider subscription that bills that product's recurring prices
    #: after this charge (additive; empty when the gateway does not say). The engine keeps
    #: it in ``ProductState.gateway_refs["subscription_id"]`` to tell, when a subscription is
    #: deleted, which products were billed through it (W6).
    subscriptions: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class CheckoutRequest:
    gateway_customer_id: str
    pending_key: str
    lines: tuple[ChargeLine, ...]
    total: Decimal
    currency: str
    success_url: str | None
    idempotency_key: str
    #: The customer's recurring fixed prices once the checkout is paid: a gateway may start
    #: the provider subscription from the checkout itself. None for a one-off payment.
    recurring: tuple[RecurringPrice, ...] | None = None


class Gateway(Protocol):
    """The payment provider port. Every write takes an idempotency key from the engine."""

    def create_customer(
        self, *, customer_id: str | None, email: str | None, name: str | None, idempotency_key: str
    ) -> str:
        """Create the provider-side customer and return its id."""

    def has_payment_method(self, gateway_customer_id: str) -> bool: ...

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        """Charge the lines now (or record a credit when the total is negative)."""

    def create_checkout(self, request: CheckoutRequest) -> str:
        """Return a hosted payment page URL; payment later arrives as a ``GatewayEvent``."""

    def billing_portal_url(self, gateway_customer_id: str, return_url: str | None) -> str: ...

    def cancel_subscription(self, gateway_customer_id: str, *, idempotency_key: str) -> None:
        """The customer has no recurring fixed price left at the provider."""


@runtime_checkable
class ChargeLookup(Protocol):
    """Optional gateway capability used by ``Autumn.recover()``.

    Tells, without charging, what became of a charge sent with ``request.idempotency_key``:
    its outcome, or None when the provider never received it (recovery then rolls the
    operation back instead of charging now). A gateway without it is re-driven with the same
    key, which its replay rule turns into "the first outcome, or the charge made now".
    """

    def find_charge(self, request: ChargeRequest) -> ChargeOutcome | None: ...


__all__ = [
    "CHARGE_REASONS",
    "ChargeLine",
    "ChargeLookup",
    "ChargeOutcome",
    "ChargeRequest",
    "CheckoutRequest",
    "Clock",
    "CustomerChange",
    "Gateway",
    "GatewayEvent",
    "RecurringPrice",
    "Store",
    "StoreCapabilities",
    "StoreTransaction",
]
