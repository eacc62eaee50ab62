"""W6 end to end on localstripe: a deleted Stripe subscription ends only the products it billed.

``StripeGateway`` reports in ``ChargeOutcome.subscriptions`` which subscription bills each
product (one per billing cycle) and the engine keeps it in ``gateway_refs["subscription_id"]``;
a subscription started by a subscription-mode Checkout is recorded from the
``checkout.session.completed`` event's ``subscription``. So a customer with a monthly product
and a yearly add-on (two Stripe subscriptions) who loses one keeps the other, and it renews.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import stripe

from autumn_core import Autumn, ManualClock
from autumn_core.app.billing import SUBSCRIPTION_REF
from autumn_core.model import CustomerState
from autumn_core.ports import StoreTransaction
from autumn_memory import MemoryStore
from autumn_stripe import StripeGateway

from .conftest import WEBHOOK_SECRET, LocalStripe, WebhookSink
from .helpers import YEARLY_ADDON, CardOnFile, catalog, invoices, live_subscriptions
from .replay import HybridClient
from .test_e2e import signed

pytestmark = pytest.mark.stripe


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


def refs(billing: Autumn, cid: str) -> dict[str, str | None]:
    """Each live product's recorded subscription id."""

    def load(tx: StoreTransaction) -> CustomerState | None:
        pk = tx.customer_pk(cid)
        return None if pk is None else tx.load_customer(pk)

    state = billing._ctx.run(load, write=False)
    assert state is not None
    return {
        p.product_id: p.gateway_refs.get(SUBSCRIPTION_REF)
        for p in state.products
        if p.status in ("active", "trialing", "past_due")
    }


def active(billing: Autumn, cid: str) -> set[str]:
    return {p.id for p in billing.customers.get(cid).products if p.status == "active"}


def gid_of(billing: Autumn, cid: str) -> str:
    gid = billing.customers.get(cid).gateway_customer_id
    assert gid is not None
    return gid


@pytest.mark.parametrize("deleted", ["month:1", "year:1"])
def test_deleting_one_of_two_subscriptions_expires_only_its_products(
    ls: LocalStripe, client: stripe.StripeClient, clock: ManualClock, deleted: str
) -> None:
    gateway = CardOnFile(
        client,
        webhook_secret=WEBHOOK_SECRET,
        max_network_retries=0,
        send_proration_behavior=False,
        finalize_invoices=False,
        one_off="payment_intent",
    )
    billing = Autumn(catalog(YEARLY_ADDON), store=MemoryStore(), gateway=gateway, clock=clock)
    sink = WebhookSink()
    try:
        ls.register_webhook("w6", sink.url, WEBHOOK_SECRET)
        # given a monthly product and a yearly add-on: two Stripe subscriptions
        billing.attach("c1", "pro")
        billing.attach("c1", "yearly-addon")
        gid = gid_of(billing, "c1")
        subs = {s["metadata"]["autumn_cycle"]: s for s in live_subscriptions(client, gid)}
        assert sorted(subs) == ["month:1", "year:1"]
        [monthly_item] = subs["month:1"]["items"]["data"]
        [yearly_item] = subs["year:1"]["items"]["data"]
        assert (monthly_item["plan"]["amount"], yearly_item["plan"]["amount"]) == (2000, 24000)
        assert refs(billing, "c1") == {
            "pro": subs["month:1"]["id"],
            "yearly-addon": subs["year:1"]["id"],
        }
        # Stripe's own creation events change nothing (each names its own subscription).
        created = sink.wait_for_all("customer.subscription.created", gid, 2)
        for body, headers in created:
            billing.handle_event(gateway.parse_webhook(body, headers["Stripe-Signature"]))
        assert active(billing, "c1") == {"pro", "yearly-addon"}

        # when one Stripe subscription is deleted (DELETE /v1/subscriptions/<id>)
        gone, kept = subs[deleted], subs[({"month:1", "year:1"} - {deleted}).pop()]
        client.v1.subscriptions.cancel(gone["id"])
        body, headers = sink.wait_for("customer.subscription.deleted", gid)
    finally:
        sink.close()
    event = gateway.parse_webhook(body, headers["Stripe-Signature"])
    assert (event.type, event.data["id"], event.data["status"]) == (
        "subscription.deleted",
        gone["id"],
        "canceled",
    )
    billing.handle_event(event)
    billing.handle_event(event)  # a repeated delivery changes nothing

    # then only that subscription's products end; the other subscription is untouched
    survivor = "pro" if deleted == "year:1" else "yearly-addon"
    expected = {"pro", "yearly-addon"} - {"yearly-addon" if deleted == "year:1" else "pro"}
    if deleted == "month:1":
        expected.add("free")  # the default product comes back when pro ends
    assert active(billing, "c1") == expected
    assert [s["id"] for s in live_subscriptions(client, gid)] == [kept["id"]]
    assert refs(billing, "c1")[survivor] == kept["id"]

    # and the survivor keeps renewing: the library bills its next period, Stripe's own
    # subscription collects the fixed price (nothing charged twice), on the same subscription.
    stripe_invoices = len(invoices(client, gid))
    renewed_before = [i for i in billing.invoices.list("c1") if i.total == kept_price(survivor)]
    clock.advance(days=32 if survivor == "pro" else 367)
    billing.process_due()
    renewed = [i for i in billing.invoices.list("c1") if i.total == kept_price(survivor)]
    assert len(renewed) > len(renewed_before)
    assert all(i.status == "paid" for i in renewed)
    assert survivor in active(billing, "c1")
    assert [s["id"] for s in live_subscriptions(client, gid)] == [kept["id"]]
    assert len(invoices(client, gid)) == stripe_invoices
    assert refs(billing, "c1")[survivor] == kept["id"]


def kept_price(product: str) -> int:
    return {"pro": 20, "yearly-addon": 240}[product]


def test_a_subscription_mode_checkout_records_its_subscription(
    ls: LocalStripe, clock: ManualClock
) -> None:
    """The session's ``subscription`` reaches the engine through ``checkout.completed``: a
    deleted subscription the library did not make leaves the product alone; deleting the
    checkout's own subscription ends it."""
    http = HybridClient(
        stripe.RequestsClient(session=ls.session),
        {("POST", "/v1/checkout/sessions"): "checkout_session_subscription.json"},
    )
    client = stripe.StripeClient(
        "sk_test_w6", base_addresses={"api": ls.base}, max_network_retries=0, http_client=http
    )
    gateway = StripeGateway.for_localstripe(client, webhook_secret=WEBHOOK_SECRET)
    billing = Autumn(catalog(), store=MemoryStore(), gateway=gateway, clock=clock)
    started = billing.attach("c1", "pro", success_url="https://app.example.com/ok")
    assert started.checkout_url is not None and started.product is None
    assert http.sent[-1].form["mode"] == "subscription"
    pending_key = http.sent[-1].form["client_reference_id"]
    gid = gid_of(billing, "c1")

    def deliver(event_type: str, obj: dict[str, object], n: int) -> None:
        payload, header = signed(event_type, obj, n)
        billing.handle_event(gateway.parse_webhook(payload, header))

    deliver(
        "checkout.session.completed",
        {
            "id": "cs_test_w6",
            "object": "checkout.session",
            "customer": gid,
            "client_reference_id": pending_key,
            "metadata": {"autumn_pending_key": pending_key},
            "mode": "subscription",
            "subscription": "sub_w6_checkout",
            "invoice": "in_w6_checkout",
            "payment_status": "paid",
            "status": "complete",
        },
        1,
    )
    assert active(billing, "c1") == {"pro"}
    assert refs(billing, "c1") == {"pro": "sub_w6_checkout"}

    def sub(sub_id: str) -> dict[str, object]:
        return {
            "id": sub_id,
            "object": "subscription",
            "customer": gid,
            "status": "canceled",
            "metadata": {},
            "items": {"object": "list", "data": []},
        }

    deliver("customer.subscription.deleted", sub("sub_w6_unrelated"), 2)
    assert active(billing, "c1") == {"pro"}
    deliver("customer.subscription.deleted", sub("sub_w6_checkout"), 3)
    assert active(billing, "c1") == {"free"}
