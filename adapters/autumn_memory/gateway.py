"""MemoryGateway: an in-process payment provider behind ``autumn_core.ports.Gateway``.

It keeps what a real provider keeps (customers, payment methods, charges, invoices, one
subscription per customer and billing cycle mirroring the recurring fixed prices) and produces
the same provider-neutral events a real provider sends: each event's ``payload`` is the record
of ``autumn_core.provider_events`` the engine acts on, built from what this gateway knows; its
``data`` is a Stripe-like object, for display only:

- ``checkout.completed``: ``data = {"id", "client_reference_id", "metadata": {"autumn_pending_key"},
  "invoice"}``
- ``payment.succeeded`` / ``payment.failed``: ``data = {"id": <gateway invoice id>, "metadata":
  {"autumn_invoice_id", "autumn_pending_key"?}, "total", "subscription"}``
- ``subscription.updated`` / ``subscription.deleted``: ``data = {"id", "status",
  "cancel_at_period_end", "metadata": {"autumn_cycle"}, "items": {"data": [{"metadata":
  {"autumn_product_id", "autumn_feature_id"}}]}}``

Like ``StripeGateway``, the recurring prices live in one subscription per billing cycle
(``"month:1"``, ``"year:1"``, ...); ``ChargeOutcome.subscriptions`` tells the engine which
subscription bills each product. Credits (P12) are kept by the engine, which only ever asks
for the net amount: a charge is collected in full, a total of 0 or less collects nothing.

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
from autumn_core.model import ZERO
from autumn_core.ports import (
    ChargeLine,
    ChargeOutcome,
    ChargeRequest,
    CheckoutRequest,
    RecurringPrice,
)
from autumn_core.provider_events import (
    CheckoutCompleted,
    PaymentFailed,
    PaymentSucceeded,
    ProviderEvent,
    SubscriptionDeleted,
    SubscriptionStatus,
    SubscriptionUpdated,
)
from autumn_core.results import GatewayEvent

#: The subscription statuses ``set_subscription_status`` accepts: the engine's own (the memory
#: provider has no vocabulary of its own to translate).
_STATUSES: tuple[SubscriptionStatus, ...] = ("active", "past_due", "ended", "other")
CHECKOUT_BASE = "https://checkout.memory-gateway.test/c/"
PORTAL_BASE = "https://billing.memory-gateway.test/p/"


@attrs.define
class MemoryCustomer:
    id: str
    customer_id: str | None
    email: str | None
    name: str | None
    has_card: bool


@attrs.define
class MemoryInvoice:
    id: str
    customer: str
    engine_invoice_id: str
    lines: tuple[ChargeLine, ...]
    total: Decimal
    #: What was actually collected (0 for a credit or a charge left open).
    collected: Decimal
    status: str  # "paid", "open" or "void"


@attrs.define
class MemorySubscription:
    id: str
    customer: str
    items: tuple[RecurringPrice, ...]
    status: SubscriptionStatus = "active"
    cancel_at_period_end: bool = False
    #: The billing cycle the subscription bills, as ``"<interval>:<count>"``.
    cycle: str = "month:1"


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

    def _event(
        self, payload: ProviderEvent, customer: str | None, data: Mapping[str, Any]
    ) -> GatewayEvent:
        event = GatewayEvent(
            id=self._id("gev"),
            type=payload.type,
            gateway_customer_id=customer,
            data=dict(data),
            created_at=self._now(),
            payload=payload,
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
            # Nothing to collect (the engine keeps credits itself, P12).
            self.invoices[gin] = MemoryInvoice(
                gin, customer.id, request.invoice_id, request.lines, request.total, ZERO, "paid"
            )
            self._sync_subscription(customer.id, request.recurring)
            return self._outcome("paid", customer.id, gin)
        if not customer.has_card:
            # The customer must pay this invoice themselves: it stays open (CO4).
            self.invoices[gin] = MemoryInvoice(
                gin, customer.id, request.invoice_id, request.lines, request.total, ZERO, "open"
            )
            self._sync_subscription(customer.id, request.recurring)
            return self._outcome(
                "requires_action",
                customer.id,
                gin,
                message="no payment method on file; the invoice is open",
            )
        if self._declines > 0:
            self._declines -= 1
            self.invoices[gin] = MemoryInvoice(
                gin, customer.id, request.invoice_id, request.lines, request.total, ZERO, "void"
            )
            self._event(PaymentFailed(gin, request.invoice_id), customer.id, data)
            return ChargeOutcome(
                status="failed", gateway_invoice_id=gin, message="card declined (decline_next)"
            )
        self.invoices[gin] = MemoryInvoice(
            gin,
            customer.id,
            request.invoice_id,
            request.lines,
            request.total,
            request.total,
            "paid",
        )
        self._sync_subscription(customer.id, request.recurring)
        self._event(PaymentSucceeded(gin, request.invoice_id), customer.id, data)
        return self._outcome("paid", customer.id, gin)

    def _outcome(self, status: str, customer: str, gin: str, *, message: str = "") -> ChargeOutcome:
        """The outcome, naming the live subscription that bills each product (W6)."""
        subscriptions = {
            price.product_id: sub.id
            for sub in self.subscriptions_of(customer)
            for price in sub.items
        }
        return ChargeOutcome(
            status=status, gateway_invoice_id=gin, message=message, subscriptions=subscriptions
        )

    def _sync_subscription(
        self, customer: str, recurring: tuple[RecurringPrice, ...] | None
    ) -> None:
        """Mirror the customer's recurring fixed prices, one subscription per billing cycle
        (the engine decides amounts and periods)."""
        if recurring is None:
            return
        wanted: dict[str, list[RecurringPrice]] = {}
        for price in recurring:
            if price.quantity > 0 and price.unit_amount > 0:
                wanted.setdefault(f"{price.interval}:{price.interval_count}", []).append(price)
        live = {sub.cycle: sub for sub in self.subscriptions_of(customer)}
        for cycle, old in live.items():
            if cycle not in wanted:
                old.status = "ended"
        for cycle, items in wanted.items():
            found = live.get(cycle)
            if found is None:
                new = MemorySubscription(self._id("gsub"), customer, tuple(items), cycle=cycle)
                self.subscriptions[new.id] = new
            else:
                found.items = tuple(items)

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
            for sub in self.subscriptions_of(gateway_customer_id):
                sub.status = "ended"

    # -- playing the customer and the provider (test helpers) ------------------------------------
    def subscriptions_of(self, gateway_customer_id: str) -> list[MemorySubscription]:
        """The customer's live subscriptions, oldest first (one per billing cycle)."""
        return [
            sub
            for sub in self.subscriptions.values()
            if sub.customer == gateway_customer_id and sub.status != "ended"
        ]

    def subscription_of(
        self, gateway_customer_id: str, cycle: str | None = None
    ) -> MemorySubscription | None:
        """The customer's (oldest) live subscription, or the one of ``cycle`` (``"year:1"``)."""
        for sub in self.subscriptions_of(gateway_customer_id):
            if cycle is None or sub.cycle == cycle:
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
                failed = PaymentFailed(gin, pending_key=request.pending_key)
                return [self._event(failed, customer.id, invoice_data)]
            checkout.status = "complete"
            customer.has_card = True
            self.invoices[gin] = MemoryInvoice(
                gin, customer.id, "", request.lines, request.total, request.total, "paid"
            )
            completed = self._event(
                CheckoutCompleted(request.pending_key, gin),
                customer.id,
                {
                    "id": checkout.session_id,
                    "object": "checkout_session",
                    "client_reference_id": request.pending_key,
                    "metadata": meta,
                    "invoice": gin,
                },
            )
            paid = self._event(
                PaymentSucceeded(gin, pending_key=request.pending_key), customer.id, invoice_data
            )
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
            payment = PaymentSucceeded(inv.id, inv.engine_invoice_id or None)
            return [self._event(payment, inv.customer, data)]

    def cancel_at_period_end(
        self, gateway_customer_id: str, cycle: str | None = None
    ) -> list[GatewayEvent]:
        """A cancel from the billing portal: the subscription stays until its period end (W5)."""
        with self._lock:
            sub = self._live_subscription(gateway_customer_id, cycle)
            sub.cancel_at_period_end = True
            return [self._subscription_event("subscription.updated", sub)]

    def set_subscription_status(
        self, gateway_customer_id: str, status: SubscriptionStatus, cycle: str | None = None
    ) -> list[GatewayEvent]:
        """The provider reports the subscription ``active``, ``past_due`` (a payment is
        missing), ``ended`` or ``other``."""
        if status not in _STATUSES:
            raise InvalidRequest(f"status must be one of {list(_STATUSES)}, got {status!r}")
        with self._lock:
            sub = self._live_subscription(gateway_customer_id, cycle)
            sub.status = status
            return [self._subscription_event("subscription.updated", sub)]

    def delete_subscription(
        self, gateway_customer_id: str, cycle: str | None = None
    ) -> list[GatewayEvent]:
        """The provider ends the subscription (of ``cycle``, else the oldest) now (W6)."""
        with self._lock:
            sub = self._live_subscription(gateway_customer_id, cycle)
            sub.status = "ended"
            return [self._subscription_event("subscription.deleted", sub)]

    def _live_subscription(
        self, gateway_customer_id: str, cycle: str | None = None
    ) -> MemorySubscription:
        sub = self.subscription_of(gateway_customer_id, cycle)
        if sub is None:
            on = f" on cycle {cycle!r}" if cycle else ""
            raise InvalidRequest(f"customer {gateway_customer_id!r} has no live subscription{on}")
        return sub

    def _subscription_event(self, type_: str, sub: MemorySubscription) -> GatewayEvent:
        products = frozenset(p.product_id for p in sub.items)
        payload: ProviderEvent
        if type_ == SubscriptionDeleted.type:
            payload = SubscriptionDeleted(sub.id, products)
        else:
            payload = SubscriptionUpdated(
                sub.id,
                sub.status,
                cancel_at_period_end=sub.cancel_at_period_end,
                product_ids=products,
            )
        return self._event(
            payload,
            sub.customer,
            {
                "id": sub.id,
                "object": "subscription",
                "status": sub.status,
                "cancel_at_period_end": sub.cancel_at_period_end,
                "metadata": {"autumn_cycle": sub.cycle},
                "items": {
                    "data": [
                        {
                            "metadata": {
                                "autumn_product_id": p.product_id,
                                "autumn_feature_id": p.feature_id or "",
                            }
                        }
                        for p in sub.items
                    ]
                },
            },
        )

    def __repr__(self) -> str:
        return f"MemoryGateway(card_on_file={self.card_on_file})"
