"""What a payment provider tells the engine, in the engine's words (W1-W6).

A gateway parses its provider's webhooks (or, for ``MemoryGateway``, its own doings) into one
of these records and hands it over as ``GatewayEvent.payload``; the core acts on the record
only and never reads a provider's JSON. Every id here is either the provider's own (an
invoice, a subscription) or one the engine gave the provider to echo back (its invoice id, a
checkout plan key, the customer's pk).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs

#: A provider subscription's state, reduced to what the engine acts on: ``"active"`` (paying,
#: or trialing), ``"past_due"`` (a payment is missing), ``"ended"`` (it will bill no more),
#: ``"other"`` (nothing to do, e.g. still being created).
SubscriptionStatus = Literal["active", "past_due", "ended", "other"]


@attrs.frozen
class CheckoutCompleted:
    """CO5/W2: the customer paid a hosted checkout; its stored plan runs once."""

    type: ClassVar[str] = "checkout.completed"

    #: The engine's key of the stored checkout plan (``CheckoutRequest.pending_key``).
    pending_key: str | None
    gateway_invoice_id: str | None = None
    #: The provider subscription the checkout started (None for a one-off payment).
    subscription_id: str | None = None


@attrs.frozen
class PaymentSucceeded:
    """W3: an invoice was paid (a checkout's first invoice, or one left open)."""

    type: ClassVar[str] = "payment.succeeded"

    gateway_invoice_id: str | None
    #: The engine's invoice id the provider echoes (``ChargeRequest.invoice_id``), if any.
    invoice_id: str | None = None
    #: The checkout plan this payment belongs to, if any.
    pending_key: str | None = None


@attrs.frozen
class PaymentFailed:
    """W4: a payment was refused: a first charge never provisions, a renewal goes past due."""

    type: ClassVar[str] = "payment.failed"

    gateway_invoice_id: str | None
    invoice_id: str | None = None
    pending_key: str | None = None


@attrs.frozen
class SubscriptionUpdated:
    """W5: the provider changed a subscription (a portal cancel, a status change)."""

    type: ClassVar[str] = "subscription.updated"

    subscription_id: str | None
    status: SubscriptionStatus
    #: The customer asked the provider to stop at the period end.
    cancel_at_period_end: bool = False
    #: The engine's product ids the subscription's items bill.
    product_ids: frozenset[str] = frozenset()
    #: The customer's pk, when the provider echoes the one the engine gave it.
    customer_pk: str | None = None
    #: The subscription's latest invoice at the provider (finds the customer by invoice).
    latest_gateway_invoice_id: str | None = None


@attrs.frozen
class SubscriptionDeleted:
    """W6: the provider ended a subscription now; the products it billed end with it."""

    type: ClassVar[str] = "subscription.deleted"

    subscription_id: str | None
    product_ids: frozenset[str] = frozenset()
    customer_pk: str | None = None
    latest_gateway_invoice_id: str | None = None


ProviderEvent = (
    CheckoutCompleted | PaymentSucceeded | PaymentFailed | SubscriptionUpdated | SubscriptionDeleted
)

#: The provider-neutral ``GatewayEvent.type`` of each record.
EVENT_TYPES = tuple(
    cls.type
    for cls in (
        CheckoutCompleted,
        PaymentSucceeded,
        PaymentFailed,
        SubscriptionUpdated,
        SubscriptionDeleted,
    )
)

__all__ = [
    "EVENT_TYPES",
    "CheckoutCompleted",
    "PaymentFailed",
    "PaymentSucceeded",
    "ProviderEvent",
    "SubscriptionDeleted",
    "SubscriptionStatus",
    "SubscriptionUpdated",
]
