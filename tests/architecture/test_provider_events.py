"""The core speaks no provider's JSON: ``handle_event`` acts on the typed, provider-neutral
payload a gateway parsed (``autumn_core.provider_events``), never on the provider's object."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from autumn_core import Autumn, Catalog, Feature, GatewayEvent, Item, ManualClock, Price, Product
from autumn_core.provider_events import PaymentSucceeded, SubscriptionUpdated
from autumn_memory import MemoryGateway, MemoryStore
from autumn_stripe.webhooks import to_gateway_event

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)

#: Names of Stripe's payload shape (and of the metadata the gateways put on Stripe objects).
PROVIDER_WORDS = {
    "client_reference_id",
    "latest_invoice",
    "cancel_at_period_end",
    "autumn_pending_key",
    "autumn_invoice_id",
    "autumn_product_id",
    "incomplete_expired",
    "unpaid",
}


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (ROOT / "autumn_core").rglob("*.py") if p.name != "provider_events.py"),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_core_module_names_the_provider_payload(path: Path) -> None:
    words = {
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert words & PROVIDER_WORDS == set()


def engine(gateway: MemoryGateway, clock: ManualClock) -> Autumn:
    catalog = Catalog(
        features=[Feature.metered("messages")],
        products=[Product("pro", price=Price(20), items=[Item.feature("messages", included=500)])],
    )
    return Autumn(catalog, store=MemoryStore(), gateway=gateway, clock=clock)


def test_a_checkout_is_completed_by_the_payload_alone() -> None:
    clock = ManualClock(T0)
    gateway = MemoryGateway(card_on_file=False, clock=clock)
    billing = engine(gateway, clock)
    url = billing.attach("c", "pro").checkout_url
    assert url is not None
    # Given the gateway's events stripped of the provider's object
    for event in gateway.complete_checkout(url):
        billing.handle_event(attrs.evolve(event, data={}))
    # Then the checkout's plan ran
    assert [(p.id, p.status) for p in billing.customers.get("c").products] == [("pro", "active")]
    assert [i.total for i in billing.invoices.list("c")] == [Decimal("20.00")]


def test_a_provider_object_without_a_payload_changes_nothing() -> None:
    clock = ManualClock(T0)
    gateway = MemoryGateway(card_on_file=False, clock=clock)
    billing = engine(gateway, clock)
    url = billing.attach("c", "pro").checkout_url
    assert url is not None
    before = billing.customers.get("c")
    # Given the same events with their Stripe-shaped objects but no parsed payload
    for event in gateway.complete_checkout(url):
        assert event.payload is not None
        billing.handle_event(attrs.evolve(event, id=event.id + "-raw", payload=None))
    # Then nothing ran: the engine does not read the provider's object
    assert billing.customers.get("c") == before


def test_stripe_objects_become_provider_neutral_records() -> None:
    paid = {"id": "in_1", "customer": "cus_1", "metadata": {"autumn_invoice_id": "inv_9"}}
    invoice = {"id": "evt_1", "type": "invoice.paid", "data": {"object": paid}}
    event = to_gateway_event(invoice)
    assert (event.type, event.gateway_customer_id) == ("payment.succeeded", "cus_1")
    assert event.payload == PaymentSucceeded("in_1", "inv_9")
    subscription = {
        "id": "evt_2",
        "type": "customer.subscription.updated",
        "data": {
            "object": {
                "id": "sub_1",
                "customer": "cus_1",
                "status": "unpaid",
                "cancel_at_period_end": True,
                "latest_invoice": {"id": "in_2"},
                "items": {"data": [{"metadata": {"autumn_product_id": "pro"}}]},
            }
        },
    }
    assert to_gateway_event(subscription).payload == SubscriptionUpdated(
        "sub_1",
        "past_due",
        cancel_at_period_end=True,
        product_ids=frozenset({"pro"}),
        latest_gateway_invoice_id="in_2",
    )
    unknown = to_gateway_event({"id": "evt_3", "type": "charge.refunded", "data": {"object": {}}})
    assert (unknown.type, unknown.payload) == ("stripe.charge.refunded", None)


def test_gateway_event_type_names_its_payload() -> None:
    event = GatewayEvent("e", PaymentSucceeded.type, None, payload=PaymentSucceeded("in_1"))
    assert event.payload is not None and event.type == event.payload.type
