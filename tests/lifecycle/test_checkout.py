"""Payment: no gateway (CO1), free (CO2), charge then commit (CO3), checkout (CO4, CO5), C7."""

from __future__ import annotations

import pytest

from autumn_core import Autumn, PaymentFailed
from autumn_memory import MemoryGateway
from tests.lifecycle.conftest import D, Factory, statuses, totals


def test_co1_without_gateway_paid_products_attach_as_paid(make: Factory) -> None:
    billing = make(gateway=None)
    result = billing.attach("c", "pro")
    assert result.checkout_url is None
    inv = billing.invoices.list("c")
    assert [(i.total, i.status, i.gateway_invoice_id) for i in inv] == [(D("20.00"), "paid", None)]
    assert billing.customers.get("c").gateway_customer_id is None


def test_co2_free_products_never_need_the_gateway(billing: Autumn, gateway: MemoryGateway) -> None:
    billing.customers.create("c")
    billing.attach("c", "boost")
    assert gateway.calls == []
    assert billing.customers.get("c").gateway_customer_id is None


def test_c7_gateway_customer_created_on_the_first_paid_attach(
    billing: Autumn, gateway: MemoryGateway
) -> None:
    billing.customers.create("c")
    assert billing.customers.get("c").gateway_customer_id is None
    billing.attach("c", "pro")
    gid = billing.customers.get("c").gateway_customer_id
    assert gid is not None and gid in gateway.customers
    assert gateway.calls == ["create_customer", "has_payment_method", "charge"]
    assert [i.gateway_invoice_id is not None for i in billing.invoices.list("c")] == [True]


def test_co3_declined_card_raises_and_changes_nothing(
    billing: Autumn, gateway: MemoryGateway
) -> None:
    billing.customers.create("c")
    before = billing.customers.get("c")
    gateway.decline_next()
    with pytest.raises(PaymentFailed):
        billing.attach("c", "pro")
    after = billing.customers.get("c")
    assert (after.products, after.features) == (before.products, before.features)
    assert billing.invoices.list("c") == []
    # and the next attempt goes through
    assert billing.attach("c", "pro").invoice.total == D("20.00")  # type: ignore[union-attr]


def test_co4_no_card_returns_a_checkout_and_provisions_nothing(make: Factory) -> None:
    gateway = MemoryGateway(card_on_file=False)
    billing = make(gateway=gateway)
    billing.customers.create("c")
    result = billing.attach("c", "pro", success_url="https://app.test/ok")
    assert result.checkout_url is not None and result.product is None
    assert statuses(billing) == {"free": "active"}
    assert billing.invoices.list("c") == []
    assert billing.customers.get("c").gateway_customer_id is not None  # C7: checkout needs it
    assert gateway.checkouts[result.checkout_url].request.success_url == "https://app.test/ok"
    # when the customer pays
    events = gateway.complete_checkout(result.checkout_url)
    for event in events:
        billing.handle_event(event)
    for event in events:  # W1: repeats change nothing
        billing.handle_event(event)
    assert statuses(billing) == {"pro": "active"}
    assert totals(billing) == [D("20.00")]
    assert [i.status for i in billing.invoices.list("c")] == ["paid"]


def test_co5_checkout_events_in_any_order_provision_once(make: Factory) -> None:
    gateway = MemoryGateway(card_on_file=False)
    billing = make(gateway=gateway)
    url = billing.attach("c", "pro").checkout_url
    assert url is not None
    for event in reversed(gateway.complete_checkout(url)):
        billing.handle_event(event)
    assert statuses(billing) == {"pro": "active"}
    assert totals(billing) == [D("20.00")]


def test_w4_failed_checkout_never_provisions(make: Factory) -> None:
    gateway = MemoryGateway(card_on_file=False)
    billing = make(gateway=gateway)
    url = billing.attach("c", "pro").checkout_url
    assert url is not None
    for event in gateway.complete_checkout(url, succeed=False):
        billing.handle_event(event)
    assert statuses(billing) == {"free": "active"}


def test_co3_force_checkout_even_with_a_card(billing: Autumn) -> None:
    result = billing.attach("c", "pro", force_checkout=True)
    assert result.checkout_url is not None and result.product is None


def test_co4_one_off_without_card_needs_checkout(make: Factory) -> None:
    billing = make(gateway=MemoryGateway(card_on_file=False))
    assert billing.attach("c", "pack").checkout_url is not None


def test_co4_add_on_merged_into_a_paid_cycle_is_invoiced_open(make: Factory) -> None:
    gateway = MemoryGateway(card_on_file=True)
    billing = make(gateway=gateway)
    billing.attach("c", "pro")
    gid = billing.customers.get("c").gateway_customer_id
    assert gid is not None
    gateway.set_payment_method(gid, False)
    result = billing.attach("c", "addon20")
    assert result.checkout_url is None and result.product is not None
    assert [i.status for i in billing.invoices.list("c")] == ["paid", "open"]
    # W3: the customer pays the open invoice
    invoice = billing.invoices.list("c")[1]
    assert invoice.gateway_invoice_id is not None
    for event in gateway.pay_invoice(invoice.gateway_invoice_id):
        billing.handle_event(event)
    assert [i.status for i in billing.invoices.list("c")] == ["paid", "paid"]


def test_t7_card_less_trial_attaches_without_payment_method(make: Factory) -> None:
    from autumn_core import FreeTrial, Item, Price, Product

    gateway = MemoryGateway(card_on_file=False)
    billing = make(
        [
            Product(
                "t",
                price=Price(20),
                free_trial=FreeTrial(7, card_required=False),
                items=[Item.feature("messages", included=1)],
            )
        ],
        gateway=gateway,
    )
    result = billing.attach("c", "t")
    assert result.checkout_url is None
    assert result.product is not None and result.product.status == "trialing"
    assert gateway.calls == []


def test_d13_card_required_trial_without_card_needs_checkout(make: Factory) -> None:
    billing = make(gateway=MemoryGateway(card_on_file=False))
    result = billing.attach("c", "pro-trial")
    assert result.checkout_url is not None and result.product is None


def test_billing_portal_url_creates_the_gateway_customer(billing: Autumn) -> None:
    billing.customers.create("c")
    url = billing.billing_portal_url("c", "https://app.test")
    assert url.startswith("https://") and billing.customers.get("c").gateway_customer_id


def test_billing_portal_url_needs_a_gateway(make: Factory) -> None:
    from autumn_core import InvalidRequest

    billing = make(gateway=None)
    billing.customers.create("c")
    with pytest.raises(InvalidRequest):
        billing.billing_portal_url("c")
