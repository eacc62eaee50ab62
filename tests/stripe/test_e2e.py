"""End to end: ``autumn_core.Autumn(..., gateway=StripeGateway)`` against localstripe.

The engine decides; these tests check that what Stripe holds afterwards matches what the library
says, that Stripe's own webhooks applied through ``handle_event`` change nothing twice, and that
checkout events reach the same final state in every order.
"""

from __future__ import annotations

import itertools
import json
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import stripe

from autumn_core import Autumn, ManualClock, to_dict
from autumn_memory import MemoryStore
from autumn_stripe import StripeGateway, signature_header

from .conftest import WEBHOOK_SECRET, LocalStripe, WebhookSink
from .helpers import CardOnFile, as_dict, catalog, collected, invoices, live_subscriptions
from .replay import HybridClient

pytestmark = pytest.mark.stripe


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def card_gateway(client: stripe.StripeClient) -> CardOnFile:
    return CardOnFile(
        client,
        webhook_secret=WEBHOOK_SECRET,
        max_network_retries=0,
        send_proration_behavior=False,
        finalize_invoices=False,
        one_off="payment_intent",
    )


@pytest.fixture
def billing(card_gateway: CardOnFile, clock: ManualClock) -> Autumn:
    return Autumn(catalog(), store=MemoryStore(), gateway=card_gateway, clock=clock)


def gid_of(billing: Autumn, cid: str) -> str:
    gid = billing.customers.get(cid).gateway_customer_id
    assert gid is not None
    return gid


def test_paid_attach_creates_one_subscription_and_a_paid_invoice(
    billing: Autumn, client: stripe.StripeClient
) -> None:
    result = billing.attach("c1", "pro")
    assert result.product is not None and result.product.status == "active"
    assert result.invoice is not None
    assert (result.invoice.total, result.invoice.status) == (Decimal(20), "paid")
    gid = gid_of(billing, "c1")
    assert as_dict(client.v1.customers.retrieve(gid))["metadata"] == {"autumn_customer_id": "c1"}
    [sub] = live_subscriptions(client, gid)
    [item] = sub["items"]["data"]
    assert (item["plan"]["amount"], item["plan"]["interval"], item["quantity"]) == (
        2000,
        "month",
        1,
    )
    assert result.invoice.gateway_invoice_id == sub["latest_invoice"]
    assert [(i["total"], i["status"]) for i in invoices(client, gid)] == [(2000, "paid")]


def test_free_products_checks_and_tracks_never_call_stripe(
    billing: Autumn, client: stripe.StripeClient
) -> None:
    billing.customers.create("c2", email="c2@example.com")  # gets the free default product
    assert billing.check("c2", "messages").allowed
    billing.track("c2", "messages", value=3)
    assert billing.customers.get("c2").gateway_customer_id is None
    assert client.v1.customers.list({"limit": 10}).data == []


def test_upgrade_renewal_and_immediate_cancel_keep_stripe_in_step(
    billing: Autumn, client: stripe.StripeClient, clock: ManualClock
) -> None:
    billing.attach("c1", "pro")
    gid = gid_of(billing, "c1")
    [sub] = live_subscriptions(client, gid)

    clock.advance(days=15)
    up = billing.attach("c1", "premium")
    assert up.scenario == "upgrade" and up.invoice is not None
    [after] = live_subscriptions(client, gid)
    assert after["id"] == sub["id"]
    assert [i["plan"]["amount"] for i in after["items"]["data"]] == [5000]
    # Stripe collected exactly the library's prorated total (credit for pro, rest of premium).
    assert collected(client, up.invoice.gateway_invoice_id) == (
        "paid",
        int(up.invoice.total * 100),
    )

    one_off = billing.attach("c1", "pack")
    assert one_off.invoice is not None
    assert collected(client, one_off.invoice.gateway_invoice_id) == ("paid", 1500)

    # Renewal: the library bills the period; the fixed price is Stripe's own subscription
    # renewal, so nothing is collected twice.
    before = len(invoices(client, gid))
    clock.advance(days=20)
    billing.process_due()
    renewal = billing.invoices.list("c1")[-1]
    assert renewal.status == "paid" and renewal.total == 50
    assert len(invoices(client, gid)) == before
    assert live_subscriptions(client, gid)[0]["id"] == sub["id"]

    billing.cancel("c1", "premium", immediately=True)
    assert live_subscriptions(client, gid) == []
    assert {p.id for p in billing.customers.get("c1").products if p.status == "active"} == {
        "free",
        "pack",
    }


def test_stripe_webhooks_of_an_attach_apply_once_and_change_nothing(
    ls: LocalStripe,
    billing: Autumn,
    card_gateway: CardOnFile,
    client: stripe.StripeClient,
) -> None:
    sink = WebhookSink()
    try:
        ls.register_webhook("e2e", sink.url, WEBHOOK_SECRET)
        billing.attach("c1", "pro")
        gid = gid_of(billing, "c1")
        deliveries = [
            sink.wait_for(t, gid)
            for t in ("customer.subscription.created", "invoice.payment_succeeded")
        ]
    finally:
        sink.close()
    before = json.dumps(to_dict(billing.customers.get("c1")), sort_keys=True)
    invoices_before = json.dumps(to_dict(billing.invoices.list("c1")), sort_keys=True)
    events = [
        card_gateway.parse_webhook(body, headers["Stripe-Signature"])
        for body, headers in deliveries
    ]
    # Each event twice, and concurrently: applied once, and an echo of the library's own change.
    threads = [threading.Thread(target=billing.handle_event, args=(e,)) for e in events * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for event in events:
        billing.handle_event(event)
    assert json.dumps(to_dict(billing.customers.get("c1")), sort_keys=True) == before
    assert json.dumps(to_dict(billing.invoices.list("c1")), sort_keys=True) == invoices_before


# -- checkout: events in every order -----------------------------------------------------------
def signed(event_type: str, obj: dict[str, Any], n: int) -> tuple[bytes, str]:
    payload = json.dumps(
        {
            "id": f"evt_{event_type.replace('.', '_')}_{n}",
            "object": "event",
            "api_version": "2025-09-30.clover",
            "created": int(datetime.now(UTC).timestamp()),
            "livemode": False,
            "type": event_type,
            "data": {"object": obj},
        }
    ).encode()
    return payload, signature_header(payload, WEBHOOK_SECRET)


def checkout_events(gid: str, pending_key: str, n: int) -> list[tuple[bytes, str]]:
    """What Stripe sends once the customer pays a checkout (shapes of Stripe's objects)."""
    invoice_id = f"in_co_{n}"
    sub = {
        "id": f"sub_co_{n}",
        "object": "subscription",
        "customer": gid,
        "status": "active",
        "cancel_at_period_end": False,
        "metadata": {"autumn_cycle": "month:1"},
    }
    return [
        signed(
            "checkout.session.completed",
            {
                "id": f"cs_test_co_{n}",
                "object": "checkout.session",
                "customer": gid,
                "client_reference_id": pending_key,
                "metadata": {"autumn_pending_key": pending_key},
                "invoice": invoice_id,
                "mode": "payment",
                "payment_status": "paid",
                "status": "complete",
                "amount_total": 2000,
                "currency": "usd",
            },
            n,
        ),
        signed("customer.subscription.created", sub, n),
        signed("customer.subscription.updated", dict(sub, status="active"), n),
        signed(
            "invoice.paid",
            {
                "id": invoice_id,
                "object": "invoice",
                "customer": gid,
                "status": "paid",
                "total": 2000,
                "amount_paid": 2000,
                "currency": "usd",
                "metadata": {"autumn_pending_key": pending_key},
            },
            n,
        ),
    ]


def test_checkout_events_reach_the_same_state_in_all_24_orders(
    ls: LocalStripe, clock: ManualClock
) -> None:
    http = HybridClient(
        stripe.RequestsClient(session=ls.session),
        {("POST", "/v1/checkout/sessions"): "checkout_session.json"},
    )
    client = stripe.StripeClient(
        "sk_test_e2e", base_addresses={"api": ls.base}, max_network_retries=0, http_client=http
    )
    gateway = StripeGateway.for_localstripe(client, webhook_secret=WEBHOOK_SECRET)
    finals = set()
    for n, order in enumerate(itertools.permutations(range(4))):
        billing = Autumn(catalog(), store=MemoryStore(), gateway=gateway, clock=clock)
        started = billing.attach("c1", "pro", success_url="https://app.example.com/ok")
        assert started.checkout_url is not None and started.product is None
        pending_key = http.sent[-1].form["client_reference_id"]
        events = checkout_events(gid_of(billing, "c1"), pending_key, n)
        for i in order:
            payload, header = events[i]
            billing.handle_event(gateway.parse_webhook(payload, header))
        customer = billing.customers.get("c1")
        finals.add(
            (
                tuple(sorted((p.id, p.status) for p in customer.products)),
                tuple((str(i.total), i.status) for i in billing.invoices.list("c1")),
            )
        )
    assert len(finals) == 1, finals
    [(products, _invoices)] = finals
    assert ("pro", "active") in products
