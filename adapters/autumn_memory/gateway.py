"""MemoryGateway: an in-process payment provider behind ``autumn_core.ports.Gateway``.

It keeps what a real provider keeps (customers, payment methods, charges, invoices, one
subscription per customer mirroring the recurring fixed prices, a credit balance) and produces
the same provider-neutral events a real provider sends, shaped like Stripe's objects so that
``Autumn.handle_event`` reads both the same way:

- ``checkout.completed``: ``data = {"id", "client_reference_id", "metadata": {"autumn_pending_key"},
  "invoice"}``
- ``payment.succeeded`` / ``payment.failed``: ``data = {"id": <gateway invoice id>, "metadata":
  {"autumn_invoice_id", "autumn_pending_key"?}, "total", "subscription"}``
- ``subscription.updated`` / ``subscription.deleted``: ``data = {"id", "status",
  "cancel_at_period_end"}``

Every write is replayed by its idempotency key, as a real provider does, so an engine retry
never charges twice. ``calls`` records every port operation the engine called, in order.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from autumn_core.clock import Clock
from autumn_core.errors import InvalidRequest
from autumn_core.ports import (
    ChargeLine,
    ChargeOutcome,
    ChargeRequest,
    CheckoutRequest,
    RecurringPrice,
)
from autumn_core.results import GatewayEvent

ZERO = Decimal(0)
CHECKOUT_BASE = "https://checkout.memory-gateway.test/c/"
PORTAL_BASE = "https://billing.memory-gateway.test/p/"


@attrs.define
class MemoryCustomer:
    id: str
    customer_id: str | None
    email: str | None
    name: str | None
    has_card: bool
    #: Credits (negative invoices) not yet used against a charge (P12).
    credit: Decimal = ZERO


@attrs.define
class MemoryInvoice:
    id: str
    customer: str
    engine_invoice_id: str
    lines: tuple[ChargeLine, ...]
    total: Decimal
    #: What was actually collected after applying the customer's credit.
    collected: Decimal
    status: str  # "paid", "open" or "void"


@attrs.define
class MemorySubscription:
    id: str
    customer: str
    items: tuple[RecurringPrice, ...]
    status: str = "active"
    cancel_at_period_end: bool = False


@attrs.define
class MemoryCheckout:
    url: str
    session_id: str
    request: CheckoutRequest
    status: str = "open"  # "open", "complete", "failed"


class MemoryGateway:
    """An in-process provider; ``card_on_file=False`` makes new customers card-less."""

    def __init__(self, *, card_on_file: bool = True, clock: Clock | None = None) -> None:
        self.card_on_file = card_on_file
        self.clock = clock
        self.calls: list[str] = []
        self.customers: dict[str, MemoryCustomer] = {}
        self.invoices: dict[str, MemoryInvoice] = {}
        self.subscriptions: dict[str, MemorySubscription] = {}
        self.checkouts: dict[str, MemoryCheckout] = {}
        #: Every event produced, in order (also returned by the test helpers that produce them).
        self.events: list[GatewayEvent] = []
        self._declines = 0
        self._replay: dict[tuple[str, str], Any] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # -- helpers --------------------------------------------------------------------------------
    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    def _now(self) -> datetime | None:
        return self.clock.now() if self.clock is not None else None

    def _event(self, type_: str, customer: str | None, data: Mapping[str, Any]) -> GatewayEvent:
        event = GatewayEvent(
            id=self._id("gev"),
            type=type_,
            gateway_customer_id=customer,
            data=dict(data),
            created_at=self._now(),
        )
        self.events.append(event)
        return event

    def _customer(self, gateway_customer_id: str) -> MemoryCustomer:
        try:
            return self.customers[gateway_customer_id]
        except KeyError:
            raise InvalidRequest(f"no such gateway customer {gateway_customer_id!r}") from None

    # -- the port ---------------------------------------------------------------------------------
    def create_customer(
        self, *, customer_id: str | None, email: str | None, name: str | None, idempotency_key: str
    ) -> str:
        with self._lock:
            self.calls.append("create_customer")
            replayed = self._replay.get(("customer", idempotency_key))
            if replayed is not None:
                return str(replayed)
            gid = self._id("gcus")
            self.customers[gid] = MemoryCustomer(gid, customer_id, email, name, self.card_on_file)
            self._replay[("customer", idempotency_key)] = gid
            return gid

    def has_payment_method(self, gateway_customer_id: str) -> bool:
        with self._lock:
            self.calls.append("has_payment_method")
            customer = self.customers.get(gateway_customer_id)
            return customer is not None and customer.has_card

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        with self._lock:
            self.calls.append("charge")
            replayed = self._replay.get(("charge", request.idempotency_key))
            if isinstance(replayed, ChargeOutcome):
                return replayed
            outcome = self._charge(request)
            self._replay[("charge", request.idempotency_key)] = outcome
            return outcome

    def find_charge(self, request: ChargeRequest) -> ChargeOutcome | None:
        """``ChargeLookup``: the first outcome for this key, or None if it never arrived.

        Used by ``Autumn.recover()``: a charge that never reached the provider is rolled back
        instead of being made late. Not recorded in ``calls`` (it is not a port write).
        """
        with self._lock:
            replayed = self._replay.get(("charge", request.idempotency_key))
            return replayed if isinstance(replayed, ChargeOutcome) else None

    def _charge(self, request: ChargeRequest) -> ChargeOutcome:
        customer = self._customer(request.gateway_customer_id)
        gin = self._id("gin")
        meta = {"autumn_invoice_id": request.invoice_id, **request.metadata}
        data = {"id": gin, "object": "invoice", "total": str(request.total), "metadata": meta}
        if request.total <= 0:
            # A credit (or nothing to collect): kept against the next invoices (P12).
            customer.credit += -request.total
            self.invoices[gin] = MemoryInvoice(
                gin, customer.id, request.invoice_id, request.lines, request.total, ZERO, "paid"
            )
            self._sync_subscription(customer.id, request.recurring)
            return ChargeOutcome(status="paid", gateway_invoice_id=gin)
        if not customer.has_card:
            # The customer must pay this invoice themselves: it stays open (CO4).
            self.invoices[gin] = MemoryInvoice(
                gin, customer.id, request.invoice_id, request.lines, request.total, ZERO, "open"
            )
            self._sync_subscription(customer.id, request.recurring)
            return ChargeOutcome(
                status="requires_action",
                gateway_invoice_id=gin,
                message="no payment method on file; the invoice is open",
            )
        if self._declines > 0:
            self._declines -= 1
            self.invoices[gin] = MemoryInvoice(
                gin, customer.id, request.invoice_id, request.lines, request.total, ZERO, "void"
            )
            self._event("payment.failed", customer.id, data)
            return ChargeOutcome(
                status="failed", gateway_invoice_id=gin, message="card declined (decline_next)"
            )
        used = min(customer.credit, request.total)
        customer.credit -= used
        self.invoices[gin] = MemoryInvoice(
            gin,
            customer.id,
            request.invoice_id,
            request.lines,
            request.total,
            request.total - used,
            "paid",
        )
        self._sync_subscription(customer.id, request.recurring)
        self._event("payment.succeeded", customer.id, data)
        return ChargeOutcome(status="paid", gateway_invoice_id=gin)

    def _sync_subscription(
        self, customer: str, recurring: tuple[RecurringPrice, ...] | None
    ) -> None:
        """Mirror the customer's recurring fixed prices in one subscription (the engine decides)."""
        if recurring is None:
            return
        items = tuple(p for p in recurring if p.quantity > 0 and p.unit_amount > 0)
        sub = self.subscription_of(customer)
        if not items:
            if sub is not None:
                sub.status = "canceled"
            return
        if sub is None:
            sub = MemorySubscription(self._id("gsub"), customer, items)
            self.subscriptions[sub.id] = sub
        else:
            sub.items = items

    def create_checkout(self, request: CheckoutRequest) -> str:
        with self._lock:
            self.calls.append("create_checkout")
            replayed = self._replay.get(("checkout", request.idempotency_key))
            if replayed is not None:
                return str(replayed)
            self._customer(request.gateway_customer_id)
            session = self._id("cs")
            url = CHECKOUT_BASE + session
            self.checkouts[url] = MemoryCheckout(url, session, request)
            self._replay[("checkout", request.idempotency_key)] = url
            return url

    def billing_portal_url(self, gateway_customer_id: str, return_url: str | None) -> str:
        with self._lock:
            self.calls.append("billing_portal_url")
            self._customer(gateway_customer_id)
            suffix = f"?return_url={return_url}" if return_url else ""
            return f"{PORTAL_BASE}{gateway_customer_id}{suffix}"

    def cancel_subscription(self, gateway_customer_id: str, *, idempotency_key: str) -> None:
        with self._lock:
            self.calls.append("cancel_subscription")
            sub = self.subscription_of(gateway_customer_id)
            if sub is not None:
                sub.status = "canceled"

    # -- playing the customer and the provider (test helpers) ------------------------------------
    def subscription_of(self, gateway_customer_id: str) -> MemorySubscription | None:
        for sub in self.subscriptions.values():
            if sub.customer == gateway_customer_id and sub.status != "canceled":
                return sub
        return None

    def decline_next(self, n: int = 1) -> None:
        """The next ``n`` charges of a positive amount fail."""
        with self._lock:
            self._declines += n

    def set_payment_method(self, gateway_customer_id: str, present: bool = True) -> None:
        with self._lock:
            self._customer(gateway_customer_id).has_card = present

    def complete_checkout(self, url: str, *, succeed: bool = True) -> list[GatewayEvent]:
        """The customer pays (or fails to pay) on the hosted page; returns the provider's events.

        Success saves the card for later charges, records a paid invoice and produces
        ``checkout.completed`` then ``payment.succeeded``; failure produces ``payment.failed``.
        """
        with self._lock:
            checkout = self.checkouts.get(url)
            if checkout is None:
                raise InvalidRequest(f"no such checkout {url!r}")
            if checkout.status != "open":
                raise InvalidRequest(f"checkout {url!r} is already {checkout.status}")
            request = checkout.request
            customer = self._customer(request.gateway_customer_id)
            gin = self._id("gin")
            meta = {"autumn_pending_key": request.pending_key}
            invoice_data = {
                "id": gin,
                "object": "invoice",
                "total": str(request.total),
                "metadata": meta,
            }
            if not succeed:
                checkout.status = "failed"
                self.invoices[gin] = MemoryInvoice(
                    gin, customer.id, "", request.lines, request.total, ZERO, "void"
                )
                return [self._event("payment.failed", customer.id, invoice_data)]
            checkout.status = "complete"
            customer.has_card = True
            self.invoices[gin] = MemoryInvoice(
                gin, customer.id, "", request.lines, request.total, request.total, "paid"
            )
            completed = self._event(
                "checkout.completed",
                customer.id,
                {
                    "id": checkout.session_id,
                    "object": "checkout_session",
                    "client_reference_id": request.pending_key,
                    "metadata": meta,
                    "invoice": gin,
                },
            )
            paid = self._event("payment.succeeded", customer.id, invoice_data)
            return [completed, paid]

    def pay_invoice(self, gateway_invoice_id: str) -> list[GatewayEvent]:
        """The customer pays an open invoice (a merged product without a card, a past due one)."""
        with self._lock:
            inv = self.invoices[gateway_invoice_id]
            inv.status = "paid"
            inv.collected = inv.total
            data = {
                "id": inv.id,
                "object": "invoice",
                "total": str(inv.total),
                "metadata": {"autumn_invoice_id": inv.engine_invoice_id},
            }
            return [self._event("payment.succeeded", inv.customer, data)]

    def cancel_at_period_end(self, gateway_customer_id: str) -> list[GatewayEvent]:
        """A cancel from the billing portal: the subscription stays until its period end (W5)."""
        with self._lock:
            sub = self._live_subscription(gateway_customer_id)
            sub.cancel_at_period_end = True
            return [self._subscription_event("subscription.updated", sub)]

    def set_subscription_status(self, gateway_customer_id: str, status: str) -> list[GatewayEvent]:
        with self._lock:
            sub = self._live_subscription(gateway_customer_id)
            sub.status = status
            return [self._subscription_event("subscription.updated", sub)]

    def delete_subscription(self, gateway_customer_id: str) -> list[GatewayEvent]:
        """The provider ends the subscription now (W6)."""
        with self._lock:
            sub = self._live_subscription(gateway_customer_id)
            sub.status = "canceled"
            return [self._subscription_event("subscription.deleted", sub)]

    def _live_subscription(self, gateway_customer_id: str) -> MemorySubscription:
        sub = self.subscription_of(gateway_customer_id)
        if sub is None:
            raise InvalidRequest(f"customer {gateway_customer_id!r} has no live subscription")
        return sub

    def _subscription_event(self, type_: str, sub: MemorySubscription) -> GatewayEvent:
        return self._event(
            type_,
            sub.customer,
            {
                "id": sub.id,
                "object": "subscription",
                "status": sub.status,
                "cancel_at_period_end": sub.cancel_at_period_end,
            },
        )

    def __repr__(self) -> str:
        return f"MemoryGateway(card_on_file={self.card_on_file})"
