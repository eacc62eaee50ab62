"""Stripe webhook verification and translation to provider-neutral ``GatewayEvent`` s.

Translation is where Stripe's shapes are read (``client_reference_id``, ``metadata.autumn_*``,
``items.data[].metadata``, subscription statuses): the event's ``payload`` is a record of
``autumn_core.provider_events``, and the engine reads nothing else.

Verification is done here rather than with ``stripe.Webhook.construct_event`` because API.md
asks for more than the SDK checks: the SDK only rejects timestamps that are too *old*, while a
signed timestamp more than ``tolerance`` seconds *ahead* of the wall clock must be refused as
well (a replay window must not be extendable by a skewed signer). The scheme is Stripe's:
``Stripe-Signature: t=<unix>,v1=<hex hmac-sha256(secret, "<t>.<payload>")>[,v1=...]``; any one
of several ``v1`` signatures may match (Stripe sends two while a secret is being rolled).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from autumn_core import signing
from autumn_core.errors import InvalidRequest
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

DEFAULT_TOLERANCE = signing.DEFAULT_TOLERANCE

#: Stripe event type -> the provider-neutral type of API.md.
EVENT_TYPES: Mapping[str, str] = {
    "checkout.session.completed": "checkout.completed",
    "invoice.paid": "payment.succeeded",
    "invoice.payment_succeeded": "payment.succeeded",
    "invoice.payment_failed": "payment.failed",
    "customer.subscription.created": "subscription.updated",
    "customer.subscription.updated": "subscription.updated",
    "customer.subscription.deleted": "subscription.deleted",
}


#: Stripe subscription statuses, as the engine sees them.
SUBSCRIPTION_STATUSES: Mapping[str, SubscriptionStatus] = {
    "active": "active",
    "trialing": "active",
    "past_due": "past_due",
    "unpaid": "past_due",
    "incomplete": "past_due",
    "paused": "past_due",
    "canceled": "ended",
    "incomplete_expired": "ended",
}


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``v1`` signature Stripe computes (used by tests and by :func:`verify`)."""
    return signing.sign(payload, secret, timestamp)


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A complete ``Stripe-Signature`` header value, as Stripe would send it."""
    t = int(time.time()) if timestamp is None else timestamp
    return signing.signature_header(payload, secret, t)


def verify(
    payload: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: Callable[[], float] = time.time,
) -> int:
    """Check ``header`` against ``payload``; return the signed timestamp.

    Raises ``WebhookSignatureError`` for a missing or malformed header, no matching ``v1``
    signature (tampered payload or wrong secret), or a timestamp further than ``tolerance``
    seconds from ``now()`` in either direction (the scheme is ``autumn_core.signing``'s).
    """
    return signing.verify(
        payload, header, secret, now=now, tolerance=tolerance, header_name="Stripe-Signature"
    )


def to_gateway_event(event: Mapping[str, Any]) -> GatewayEvent:
    """Translate a decoded Stripe event; unknown types keep Stripe's name with a prefix.

    A correctly signed payload that is not an event raises ``InvalidRequest`` (not a signature
    error: the sender is authentic, the content is not something this library understands).

    Unknown types are passed through as ``"stripe.<type>"`` rather than rejected: Stripe sends
    whatever the endpoint subscribed to, and the engine can ignore what it does not know.
    """
    try:
        event_id = str(event["id"])
        stripe_type = str(event["type"])
        obj = event["data"]["object"]
    except (KeyError, TypeError) as exc:
        raise InvalidRequest(f"signed payload is not a Stripe event: missing {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequest("signed payload is not a Stripe event: data.object")
    customer = obj.get("customer")
    if isinstance(customer, dict):  # expanded customer
        customer = customer.get("id")
    created = event.get("created")
    created_at = (
        datetime.fromtimestamp(int(created), tz=UTC) if isinstance(created, int | float) else None
    )
    neutral = EVENT_TYPES.get(stripe_type)
    return GatewayEvent(
        id=event_id,
        type=neutral or f"stripe.{stripe_type}",
        gateway_customer_id=customer if isinstance(customer, str) else None,
        data=obj,
        created_at=created_at,
        payload=None if neutral is None else payload_of(neutral, obj),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _id_of(value: Any) -> str | None:
    """An object reference: an id, or an expanded object's id."""
    return _text(value.get("id")) if isinstance(value, Mapping) else _text(value)


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _pending_key(obj: Mapping[str, Any]) -> str | None:
    """The engine's checkout plan key: a Checkout Session's ``client_reference_id``, or the
    ``autumn_pending_key`` metadata the engine set on the session and its invoice."""
    return _text(obj.get("client_reference_id")) or _text(_metadata(obj).get("autumn_pending_key"))


def _item_products(obj: Mapping[str, Any]) -> frozenset[str]:
    """The engine's product ids on a subscription's items (``items.data[].metadata``)."""
    items = obj.get("items")
    rows = items.get("data") if isinstance(items, Mapping) else None
    out = set()
    for item in rows if isinstance(rows, list) else []:
        meta = item.get("metadata") if isinstance(item, Mapping) else None
        pid = _text(meta.get("autumn_product_id")) if isinstance(meta, Mapping) else None
        if pid is not None:
            out.add(pid)
    return frozenset(out)


def payload_of(neutral_type: str, obj: Mapping[str, Any]) -> ProviderEvent:
    """The provider-neutral record of a Stripe object (a Checkout Session, an Invoice or a
    Subscription) for the event type it came with."""
    if neutral_type == "checkout.completed":
        return CheckoutCompleted(
            pending_key=_pending_key(obj),
            gateway_invoice_id=_id_of(obj.get("invoice")),
            subscription_id=_id_of(obj.get("subscription")),
        )
    if neutral_type in ("payment.succeeded", "payment.failed"):
        payment = PaymentSucceeded if neutral_type == "payment.succeeded" else PaymentFailed
        return payment(
            gateway_invoice_id=_text(obj.get("id")),
            invoice_id=_text(_metadata(obj).get("autumn_invoice_id")),
            pending_key=_pending_key(obj),
        )
    subscription_id = _text(obj.get("id"))
    products = _item_products(obj)
    customer_pk = _text(_metadata(obj).get("autumn_customer_pk"))
    latest = _id_of(obj.get("latest_invoice"))
    if neutral_type == "subscription.deleted":
        return SubscriptionDeleted(subscription_id, products, customer_pk, latest)
    return SubscriptionUpdated(
        subscription_id,
        SUBSCRIPTION_STATUSES.get(str(obj.get("status")), "other"),
        cancel_at_period_end=obj.get("cancel_at_period_end") is True,
        product_ids=products,
        customer_pk=customer_pk,
        latest_gateway_invoice_id=latest,
    )


def parse(
    payload: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: Callable[[], float] = time.time,
) -> GatewayEvent:
    """Verify, decode and translate one webhook delivery."""
    verify(payload, header, secret, tolerance=tolerance, now=now)
    try:
        event = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"signed payload is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise InvalidRequest("signed payload is not a JSON object")
    return to_gateway_event(event)
