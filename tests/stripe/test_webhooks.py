"""Webhooks: real deliveries signed by localstripe, verified by ``parse_webhook``.

localstripe posts each event to the registered URL (a loopback HTTP server owned by the test)
with a ``Stripe-Signature`` header. The rejection cases re-sign or alter those real payloads.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import stripe

from autumn_core.errors import InvalidRequest, WebhookSignatureError
from autumn_stripe import StripeGateway, signature_header
from autumn_stripe.webhooks import sign

from .conftest import WEBHOOK_SECRET, LocalStripe, WebhookSink
from .helpers import add_card, base, line, request

pytestmark = pytest.mark.stripe


@pytest.fixture(scope="module")
def delivered(
    localstripe: LocalStripe, webhook_sink: WebhookSink
) -> dict[str, tuple[bytes, dict[str, str]]]:
    """A paid subscription made through the gateway, and the webhooks it produced (once)."""
    localstripe.flush()
    localstripe.register_webhook("autumn", webhook_sink.url, WEBHOOK_SECRET)
    client = localstripe.client()
    gateway = StripeGateway.for_localstripe(client, webhook_secret=WEBHOOK_SECRET)
    cus = gateway.create_customer(
        customer_id="user_w", email=None, name=None, idempotency_key="w-cus"
    )
    add_card(client, cus)
    outcome = gateway.charge(request(cus, [line("20")], key="w-att", recurring=[base()]))
    assert outcome.status == "paid"
    return {
        t: webhook_sink.wait_for(t, cus)
        for t in ("customer.subscription.created", "invoice.payment_succeeded")
    }


def header_of(headers: dict[str, str]) -> str:
    return next(v for k, v in headers.items() if k.lower() == "stripe-signature")


def test_real_signed_events_are_verified_and_mapped(
    gateway: StripeGateway, delivered: dict[str, tuple[bytes, dict[str, str]]]
) -> None:
    body, headers = delivered["customer.subscription.created"]
    event = gateway.parse_webhook(body, header_of(headers))
    raw = json.loads(body)
    assert event.id == raw["id"] and event.id.startswith("evt_")
    assert event.type == "subscription.updated"
    assert event.gateway_customer_id == raw["data"]["object"]["customer"]
    assert event.data["object"] == "subscription"
    assert event.data["metadata"] == {"autumn_cycle": "month:1", "autumn_created_by": "w-att"}
    assert isinstance(event.data, dict)
    assert event.created_at is not None and event.created_at.tzinfo is UTC
    assert abs((datetime.now(UTC) - event.created_at).total_seconds()) < 60

    body, headers = delivered["invoice.payment_succeeded"]
    paid = gateway.parse_webhook(body, header_of(headers))
    assert paid.type == "payment.succeeded"
    assert paid.data["status"] == "paid"
    assert paid.gateway_customer_id == event.gateway_customer_id


def test_a_flipped_byte_is_rejected(
    gateway: StripeGateway, delivered: dict[str, tuple[bytes, dict[str, str]]]
) -> None:
    body, headers = delivered["invoice.payment_succeeded"]
    tampered = body.replace(b'"paid"', b'"paic"', 1)
    assert tampered != body
    with pytest.raises(WebhookSignatureError, match="no v1 signature"):
        gateway.parse_webhook(tampered, header_of(headers))


def test_the_wrong_secret_is_rejected(
    client: stripe.StripeClient, delivered: dict[str, tuple[bytes, dict[str, str]]]
) -> None:
    body, headers = delivered["invoice.payment_succeeded"]
    other = StripeGateway.for_localstripe(client, webhook_secret="whsec_someone_else")
    with pytest.raises(WebhookSignatureError):
        other.parse_webhook(body, header_of(headers))


def test_a_missing_or_malformed_header_is_rejected(
    gateway: StripeGateway, delivered: dict[str, tuple[bytes, dict[str, str]]]
) -> None:
    body, _ = delivered["invoice.payment_succeeded"]
    for header in ("", "garbage", "t=abc,v1=00", "v1=deadbeef", f"t={int(time.time())}"):
        with pytest.raises(WebhookSignatureError):
            gateway.parse_webhook(body, header)


def test_timestamps_beyond_300_seconds_are_rejected(
    gateway: StripeGateway, delivered: dict[str, tuple[bytes, dict[str, str]]]
) -> None:
    body, _ = delivered["invoice.payment_succeeded"]
    now = int(time.time())
    for stale in (now - 301, now + 301):
        with pytest.raises(WebhookSignatureError, match="wall clock"):
            gateway.parse_webhook(body, signature_header(body, WEBHOOK_SECRET, stale))
    # Within the tolerance is fine (in both directions).
    for fresh in (now - 290, now + 290):
        assert gateway.parse_webhook(body, signature_header(body, WEBHOOK_SECRET, fresh)).id


def test_any_one_of_several_v1_signatures_may_match(
    gateway: StripeGateway, delivered: dict[str, tuple[bytes, dict[str, str]]]
) -> None:
    body, _ = delivered["invoice.payment_succeeded"]
    t = int(time.time())
    rolled = f"t={t},v1={sign(body, 'whsec_old_secret', t)},v1={sign(body, WEBHOOK_SECRET, t)}"
    assert gateway.parse_webhook(body, rolled).type == "payment.succeeded"
    with_v0 = f"t={t},v0={sign(body, WEBHOOK_SECRET, t)}"  # only v1 counts
    with pytest.raises(WebhookSignatureError):
        gateway.parse_webhook(body, with_v0)


@pytest.mark.parametrize(
    ("stripe_type", "expected"),
    [
        ("checkout.session.completed", "checkout.completed"),
        ("invoice.paid", "payment.succeeded"),
        ("invoice.payment_succeeded", "payment.succeeded"),
        ("invoice.payment_failed", "payment.failed"),
        ("customer.subscription.created", "subscription.updated"),
        ("customer.subscription.updated", "subscription.updated"),
        ("customer.subscription.deleted", "subscription.deleted"),
    ],
)
def test_event_type_mapping(gateway: StripeGateway, stripe_type: str, expected: str) -> None:
    payload = json.dumps(
        {
            "id": "evt_1",
            "object": "event",
            "type": stripe_type,
            "created": 1764100000,
            "data": {"object": {"id": "x_1", "customer": "cus_9"}},
        }
    ).encode()
    event = gateway.parse_webhook(payload, signature_header(payload, WEBHOOK_SECRET))
    assert (event.type, event.id, event.gateway_customer_id) == (expected, "evt_1", "cus_9")
    assert event.created_at == datetime.fromtimestamp(1764100000, tz=UTC)


def test_a_signed_payload_that_is_not_an_event_is_an_invalid_request(
    gateway: StripeGateway,
) -> None:
    for payload in (b"not json", b"[1, 2]", b'{"id": "evt_1"}'):
        with pytest.raises(InvalidRequest) as err:
            gateway.parse_webhook(payload, signature_header(payload, WEBHOOK_SECRET))
        assert not isinstance(err.value, WebhookSignatureError)
