"""Flows localstripe cannot serve, run through the SDK against recorded Stripe responses.

``ReplayClient`` (replay.py) is plugged into ``stripe.StripeClient(http_client=...)``: the SDK
encodes and "sends" each request, the recording answers it, and the test asserts the requests
(path, form fields, idempotency keys) the gateway made. Covered here: Checkout Sessions, billing
portal sessions, ``proration_behavior="none"`` with invoice finalize/pay on real Stripe, a
one-off invoice for a customer without a subscription, a decline on ``/pay`` (Stripe answers
402), and rate limit / 5xx translation.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from autumn_core.errors import GatewayError
from autumn_core.ports import CheckoutRequest
from autumn_stripe import StripeGateway

from .helpers import base, line, request
from .replay import ReplayClient, replay_client

pytestmark = pytest.mark.stripe

CUS = "cus_RecAutumn0001"
SUB = "sub_1RecAutumnSub0001"
INV = "in_1RecAutumnInv0001"


def gateway_for(script: list[tuple[str, str, str]]) -> tuple[StripeGateway, ReplayClient]:
    client, http = replay_client(script)
    return StripeGateway(client), http


def test_checkout_session() -> None:
    gateway, http = gateway_for([("POST", "/v1/checkout/sessions", "checkout_session.json")])
    url = gateway.create_checkout(
        CheckoutRequest(
            gateway_customer_id=CUS,
            pending_key="pending_att_1",
            lines=(line("20"),),
            total=Decimal(20),
            currency="usd",
            success_url="https://app.example.com/billing/success",
            idempotency_key="att-co",
        )
    )
    assert url.startswith("https://checkout.stripe.com/c/pay/cs_test_")
    [sent] = http.sent
    assert sent.idempotency_key == "att-co:checkout"
    assert sent.headers["Authorization"] == "Bearer sk_test_replay"
    assert sent.form == {
        "mode": "payment",
        "customer": CUS,
        "client_reference_id": "pending_att_1",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "2000",
        "line_items[0][price_data][product_data][name]": "pro base",
        "metadata[autumn_pending_key]": "pending_att_1",
        "payment_intent_data[setup_future_usage]": "off_session",
        "payment_intent_data[metadata][autumn_pending_key]": "pending_att_1",
        "invoice_creation[enabled]": "true",
        "invoice_creation[invoice_data][metadata][autumn_pending_key]": "pending_att_1",
        "success_url": "https://app.example.com/billing/success",
    }


def test_checkout_with_a_credit_line_charges_the_net_total() -> None:
    gateway, http = gateway_for([("POST", "/v1/checkout/sessions", "checkout_session.json")])
    gateway.create_checkout(
        CheckoutRequest(
            gateway_customer_id=CUS,
            pending_key="p2",
            lines=(line("-10", desc="unused pro"), line("30", "premium")),
            total=Decimal(20),
            currency="usd",
            success_url=None,
            idempotency_key="att-co2",
        )
    )
    form = http.sent[0].form
    assert form["line_items[0][price_data][unit_amount]"] == "2000"
    assert "line_items[1][quantity]" not in form
    assert "success_url" not in form


def test_billing_portal_session() -> None:
    gateway, http = gateway_for(
        [("POST", "/v1/billing_portal/sessions", "billing_portal_session.json")]
    )
    url = gateway.billing_portal_url(CUS, "https://app.example.com/account")
    assert url.startswith("https://billing.stripe.com/p/session/")
    [sent] = http.sent
    assert (sent.method, sent.path) == ("POST", "/v1/billing_portal/sessions")
    assert sent.form == {"customer": CUS, "return_url": "https://app.example.com/account"}


def test_upgrade_on_real_stripe_invoices_the_library_lines_and_updates_without_prorations() -> None:
    premium = base("50", "premium")
    probe, _ = gateway_for([])
    [item] = probe._items([premium], "usd")
    gateway, http = gateway_for(
        [
            ("GET", "/v1/subscriptions", "subscription_list_pro.json"),
            ("GET", f"/v1/plans/{item.plan_id}", "plan_premium.json"),
            ("POST", "/v1/invoiceitems", "invoiceitem.json"),
            ("POST", "/v1/invoiceitems", "invoiceitem.json"),
            ("POST", "/v1/invoices", "invoice_draft.json"),
            ("POST", f"/v1/invoices/{INV}/finalize", "invoice_open.json"),
            ("POST", f"/v1/invoices/{INV}/pay", "invoice_paid.json"),
            ("POST", f"/v1/subscriptions/{SUB}", "subscription_updated_premium.json"),
        ]
    )
    outcome = gateway.charge(
        request(
            CUS,
            [line("-10", "pro", None, "unused pro"), line("20", "premium", None, "premium rest")],
            key="upgrade",
            recurring=[premium],
        )
    )
    assert (outcome.status, outcome.gateway_invoice_id) == ("paid", INV)
    assert [(s.method, s.path) for s in http.sent][-1] == ("POST", f"/v1/subscriptions/{SUB}")
    assert [s.idempotency_key for s in http.sent if s.method == "POST"] == [
        "upgrade:item:0",
        "upgrade:item:1",
        "upgrade:invoice",
        "upgrade:finalize",
        "upgrade:pay",
        f"upgrade:subscription-update:{SUB}",
    ]
    credit, charge = (s.form for s in http.sent[2:4])
    assert (credit["amount"], charge["amount"]) == ("-1000", "2000")
    assert credit["metadata[autumn_invoice_id]"] == "inv_upgrade"
    invoice = http.sent[4].form
    assert invoice["pending_invoice_items_behavior"] == "include"
    assert invoice["metadata[autumn_invoice_id]"] == "inv_upgrade"
    update = http.sent[-1].form
    assert update["proration_behavior"] == "none"
    assert update["items[0][id]"] == "si_RecAutumnItem01"  # the same item, new plan
    assert update["items[0][plan]"] == item.plan_id
    assert update["items[0][quantity]"] == "1"
    assert not any(k.startswith("items[1]") for k in update)


def test_one_off_invoice_for_a_customer_without_subscription() -> None:
    gateway, http = gateway_for(
        [
            ("GET", "/v1/subscriptions", "subscription_list_empty.json"),
            ("POST", "/v1/invoiceitems", "invoiceitem.json"),
            ("POST", "/v1/invoices", "invoice_draft.json"),
            ("POST", f"/v1/invoices/{INV}/finalize", "invoice_open.json"),
            ("POST", f"/v1/invoices/{INV}/pay", "invoice_paid.json"),
        ]
    )
    outcome = gateway.charge(request(CUS, [line("10", "pack", None, "report pack")], key="oo"))
    assert (outcome.status, outcome.gateway_invoice_id) == ("paid", INV)
    assert http.sent[1].form["amount"] == "1000"
    assert http.sent[1].form["description"] == "report pack"
    assert http.script == []


def test_decline_on_pay_is_a_failed_outcome_and_the_invoice_is_voided() -> None:
    gateway, http = gateway_for(
        [
            ("GET", "/v1/subscriptions", "subscription_list_empty.json"),
            ("POST", "/v1/invoiceitems", "invoiceitem.json"),
            ("POST", "/v1/invoices", "invoice_draft.json"),
            ("POST", f"/v1/invoices/{INV}/finalize", "invoice_open.json"),
            ("POST", f"/v1/invoices/{INV}/pay", "error_card_declined.json"),
            ("GET", f"/v1/invoices/{INV}", "invoice_open.json"),
            ("POST", f"/v1/invoices/{INV}/void", "invoice_void.json"),
        ]
    )
    outcome = gateway.charge(request(CUS, [line("10", "pack")], key="oo-d"))
    assert outcome.status == "failed"
    assert outcome.gateway_invoice_id == INV
    assert "Your card was declined" in outcome.message
    assert http.sent[-1].idempotency_key == "oo-d:void"
    assert http.script == []


def test_no_payment_method_leaves_the_invoice_open_for_the_customer() -> None:
    gateway, http = gateway_for(
        [
            ("GET", "/v1/subscriptions", "subscription_list_empty.json"),
            ("POST", "/v1/invoiceitems", "invoiceitem.json"),
            ("POST", "/v1/invoices", "invoice_draft.json"),
            ("POST", f"/v1/invoices/{INV}/finalize", "invoice_open.json"),
            ("POST", f"/v1/invoices/{INV}/pay", "error_no_payment_method.json"),
            ("GET", f"/v1/customers/{CUS}", "customer_no_pm.json"),
            ("GET", "/v1/payment_methods", "payment_method_list_empty.json"),
        ]
    )
    outcome = gateway.charge(request(CUS, [line("10", "addon")], key="oo-open"))
    assert (outcome.status, outcome.gateway_invoice_id) == ("requires_action", INV)
    assert outcome.checkout_url == "https://invoice.stripe.com/i/acct_1Rec/test_YWNjdF8x"
    assert http.script == []


def test_a_card_saved_by_checkout_is_made_default_and_the_payment_retried() -> None:
    gateway, http = gateway_for(
        [
            ("GET", "/v1/subscriptions", "subscription_list_empty.json"),
            ("POST", "/v1/invoiceitems", "invoiceitem.json"),
            ("POST", "/v1/invoices", "invoice_draft.json"),
            ("POST", f"/v1/invoices/{INV}/finalize", "invoice_open.json"),
            ("POST", f"/v1/invoices/{INV}/pay", "error_no_payment_method.json"),
            ("GET", f"/v1/customers/{CUS}", "customer_no_pm.json"),
            ("GET", "/v1/payment_methods", "payment_method_list_card.json"),
            ("POST", f"/v1/customers/{CUS}", "customer_default_pm.json"),
            ("POST", f"/v1/invoices/{INV}/pay", "invoice_paid.json"),
        ]
    )
    outcome = gateway.charge(request(CUS, [line("10", "pro")], key="renew-7"))
    assert (outcome.status, outcome.gateway_invoice_id) == ("paid", INV)
    update = http.sent[7]
    assert update.form == {"invoice_settings[default_payment_method]": "pm_1RecAutumnCard001"}
    assert [s.idempotency_key for s in http.sent[-1:]] == ["renew-7:pay-default-pm"]
    assert http.script == []


@pytest.mark.parametrize(
    ("recording", "words"),
    [("error_rate_limit.json", "rate-limited"), ("error_api_500.json", "Stripe failed")],
)
def test_rate_limit_and_5xx_are_gateway_errors_that_say_retry(recording: str, words: str) -> None:
    gateway, _ = gateway_for([("GET", "/v1/subscriptions", recording)])
    with pytest.raises(GatewayError) as err:
        gateway.charge(request(CUS, [line("10", "pack")], key="oo-e"))
    assert words in err.value.message
    assert "retry" in err.value.message
    assert err.value.code == "gateway_error"


# -- Checkout in subscription mode (CheckoutRequest.recurring) -------------------------------
def test_checkout_with_recurring_prices_opens_a_subscription_mode_session() -> None:
    """The plans are the session's line items, other lines one-time items on its first invoice;
    the subscription Stripe creates on completion carries ``autumn_cycle`` so the engine's
    later charges find and modify it."""
    probe, _ = gateway_for([])
    [item] = probe._items([base()], "usd")
    gateway, http = gateway_for(
        [
            ("GET", "/v1/subscriptions", "subscription_list_empty.json"),
            ("GET", f"/v1/plans/{item.plan_id}", "plan_premium.json"),
            ("POST", "/v1/checkout/sessions", "checkout_session_subscription.json"),
        ]
    )
    url = gateway.create_checkout(
        CheckoutRequest(
            gateway_customer_id=CUS,
            pending_key="pending_att_2",
            lines=(line("20"), line("15", "pack", None, "50 messages")),
            total=Decimal(35),
            currency="usd",
            success_url="https://app.example.com/billing/success",
            idempotency_key="att-sub",
            recurring=(base(),),
        )
    )
    assert url.startswith("https://checkout.stripe.com/c/pay/cs_test_")
    sent = http.sent[-1]
    assert sent.idempotency_key == "att-sub:checkout"
    assert sent.form == {
        "mode": "subscription",
        "customer": CUS,
        "client_reference_id": "pending_att_2",
        "line_items[0][price]": item.plan_id,
        "line_items[0][quantity]": "1",
        "line_items[1][quantity]": "1",
        "line_items[1][price_data][currency]": "usd",
        "line_items[1][price_data][unit_amount]": "1500",
        "line_items[1][price_data][product_data][name]": "50 messages",
        "metadata[autumn_pending_key]": "pending_att_2",
        "subscription_data[metadata][autumn_cycle]": "month:1",
        "subscription_data[metadata][autumn_created_by]": "att-sub",
        "subscription_data[metadata][autumn_pending_key]": "pending_att_2",
        "success_url": "https://app.example.com/billing/success",
    }


def test_checkout_whose_lines_do_not_pay_the_full_price_stays_in_payment_mode() -> None:
    """A prorated or trial amount cannot be expressed by a subscription-mode session."""
    gateway, http = gateway_for([("POST", "/v1/checkout/sessions", "checkout_session.json")])
    gateway.create_checkout(
        CheckoutRequest(
            gateway_customer_id=CUS,
            pending_key="pending_att_3",
            lines=(line("7.50"),),
            total=Decimal("7.50"),
            currency="usd",
            success_url=None,
            idempotency_key="att-pro",
            recurring=(base(),),
        )
    )
    [sent] = http.sent
    assert sent.form["mode"] == "payment"
    assert sent.form["line_items[0][price_data][unit_amount]"] == "750"


def test_checkout_for_a_cycle_that_has_its_subscription_stays_in_payment_mode() -> None:
    """A subscription-mode session would start a second subscription of the cycle, billing the
    prices of the existing one twice (e.g. a forced checkout for a product merged into it)."""
    gateway, http = gateway_for(
        [
            ("GET", "/v1/subscriptions", "subscription_list_pro.json"),
            ("POST", "/v1/checkout/sessions", "checkout_session.json"),
        ]
    )
    gateway.create_checkout(
        CheckoutRequest(
            gateway_customer_id=CUS,
            pending_key="pending_att_4",
            lines=(line("50", "premium"), line("20", "team")),
            total=Decimal(70),
            currency="usd",
            success_url=None,
            idempotency_key="att-team",
            recurring=(base("50", "premium"), base("20", "team")),
        )
    )
    assert [(s.method, s.path) for s in http.sent] == [
        ("GET", "/v1/subscriptions"),
        ("POST", "/v1/checkout/sessions"),
    ]
    assert http.sent[-1].form["mode"] == "payment"


# -- the first-subscription key -------------------------------------------------------------
def test_a_first_subscription_taken_by_another_operation_is_modified_not_duplicated() -> None:
    """The gateway just created the customer (no subscription list), but another process made
    the first subscription meanwhile: Stripe refuses the per-customer first-subscription key
    with other parameters, and the gateway re-plans from the list (updates that one)."""
    premium = base("50", "premium")
    probe, _ = gateway_for([])
    [item] = probe._items([premium], "usd")
    gateway, http = gateway_for(
        [
            ("GET", f"/v1/plans/{item.plan_id}", "plan_premium.json"),
            ("POST", "/v1/subscriptions", "error_idempotency.json"),
            ("GET", "/v1/subscriptions", "subscription_list_pro.json"),
            ("POST", f"/v1/subscriptions/{SUB}", "subscription_updated_premium.json"),
        ]
    )
    gateway._remember(gateway._fresh, CUS)  # as create_customer does
    outcome = gateway.charge(request(CUS, [], key="att-race", recurring=[premium]))
    assert outcome.status == "paid"
    assert [(s.method, s.path) for s in http.sent] == [
        ("GET", f"/v1/plans/{item.plan_id}"),
        ("POST", "/v1/subscriptions"),
        ("GET", "/v1/subscriptions"),
        ("POST", f"/v1/subscriptions/{SUB}"),
    ]
    assert http.sent[1].idempotency_key == f"autumn-first-subscription:{CUS}:month:1"
    update = http.sent[-1].form
    assert update["items[0][id]"] == "si_RecAutumnItem01"
    assert update["metadata[autumn_updated_by]"] == "att-race"
