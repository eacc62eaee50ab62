"""StripeGateway against a real localstripe server (started by conftest.py).

Each test starts from an empty server. What is asserted is what Stripe holds afterwards (read
back through the plain SDK), not what the gateway says it did.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import stripe

from autumn_core.errors import GatewayError
from autumn_stripe import StripeGateway

from .conftest import LocalStripe
from .helpers import (
    DECLINED_ON_ATTACH,
    DECLINED_ON_CHARGE,
    add_card,
    all_subscriptions,
    as_dict,
    base,
    collected,
    invoices,
    line,
    live_subscriptions,
    pending_items,
    request,
    seats,
)

pytestmark = pytest.mark.stripe


def new_customer(gateway: StripeGateway, cid: str = "user_1", key: str = "op-cust") -> str:
    return gateway.create_customer(
        customer_id=cid, email=f"{cid}@example.com", name="Ada", idempotency_key=key
    )


# -- customers and payment methods -------------------------------------------------------------
def test_customer_carries_library_id_in_metadata(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway, "user_42")
    stored = as_dict(client.v1.customers.retrieve(cus))
    assert cus.startswith("cus_")
    assert stored["metadata"] == {"autumn_customer_id": "user_42"}
    assert stored["email"] == "user_42@example.com"
    assert stored["name"] == "Ada"


def test_payment_method_via_token_source(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    assert gateway.has_payment_method(cus) is False
    add_card(client, cus)
    assert gateway.has_payment_method(cus) is True


def test_payment_method_attached_without_default_counts(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    pm = client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(pm.id, {"customer": cus})
    assert gateway.has_payment_method(cus) is True
    # ... and it is made the default, so the charge that follows can use it.
    stored = as_dict(client.v1.customers.retrieve(cus))
    assert stored["invoice_settings"]["default_payment_method"] == pm.id
    outcome = gateway.charge(request(cus, [line("20")], key="att-pm", recurring=[base()]))
    assert outcome.status == "paid", outcome.message
    assert live_subscriptions(client, cus)[0]["status"] == "active"


def test_card_declined_on_attach_leaves_no_payment_method(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    with pytest.raises(stripe.CardError):
        add_card(client, cus, DECLINED_ON_ATTACH)
    assert gateway.has_payment_method(cus) is False


# -- plans and subscriptions -------------------------------------------------------------------
def test_first_recurring_charge_creates_one_subscription_of_2000_usd_monthly(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    outcome = gateway.charge(request(cus, [line("20")], key="att-1", recurring=[base("20")]))

    assert outcome.status == "paid", outcome.message
    [sub] = live_subscriptions(client, cus)
    assert sub["status"] == "active"
    assert sub["metadata"] == {"autumn_cycle": "month:1", "autumn_created_by": "att-1"}
    [item] = sub["items"]["data"]
    assert item["quantity"] == 1
    plan = item["plan"]
    assert (plan["amount"], plan["currency"], plan["interval"], plan["interval_count"]) == (
        2000,
        "usd",
        "month",
        1,
    )
    assert plan["metadata"] == {"autumn_product_id": "pro", "autumn_feature_id": ""}
    # One Stripe invoice, the subscription's first, carries the charge; nothing else is billed.
    [invoice] = invoices(client, cus)
    assert outcome.gateway_invoice_id == invoice["id"] == sub["latest_invoice"]
    assert (invoice["status"], invoice["total"]) == ("paid", 2000)
    assert pending_items(client, cus) == []


def test_plan_sync_is_not_duplicated(gateway: StripeGateway, client: stripe.StripeClient) -> None:
    a, b = new_customer(gateway, "a", "k-a"), new_customer(gateway, "b", "k-b")
    add_card(client, a)
    add_card(client, b)
    assert (
        gateway.charge(request(a, [line("20")], key="att-a", recurring=[base()])).status == "paid"
    )
    # A fresh gateway (no in-process cache, like another process) finds the same plan again.
    other = StripeGateway.for_localstripe(client)
    assert other.charge(request(b, [line("20")], key="att-b", recurring=[base()])).status == "paid"

    plans = [as_dict(p) for p in client.v1.plans.list({"limit": 100}).data]
    products = [as_dict(p) for p in client.v1.products.list({"limit": 100}).data]
    assert len(plans) == 1 and len(products) == 1
    assert products[0]["metadata"] == {"autumn_product_id": "pro"}
    plan_a = live_subscriptions(client, a)[0]["items"]["data"][0]["plan"]["id"]
    plan_b = live_subscriptions(client, b)[0]["items"]["data"][0]["plan"]["id"]
    assert plan_a == plan_b == plans[0]["id"]


def test_retried_charge_keeps_one_subscription(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    req = request(cus, [line("20")], key="att-retry", recurring=[base()])
    first = gateway.charge(req)
    assert first.status == "paid"
    # The engine retries the same operation (e.g. its process died after Stripe answered): the
    # subscription is recognised as this operation's own, so nothing is created or charged
    # again, even on a server that ignores idempotency keys.
    again = gateway.charge(req)
    assert (again.status, again.gateway_invoice_id) == ("paid", first.gateway_invoice_id)
    assert len(all_subscriptions(client, cus)) == 1
    assert len(invoices(client, cus)) == 1
    assert pending_items(client, cus) == []


# -- which subscription bills each product (ChargeOutcome.subscriptions) --------------------
def test_outcomes_name_the_subscription_of_each_product_per_cycle(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    """A monthly product and a yearly add-on: two subscriptions, each product mapped to its own;
    a charge that creates or changes nothing (a renewal) names none; a retry names the same."""
    cus = new_customer(gateway)
    add_card(client, cus)
    first = gateway.charge(request(cus, [line("20")], key="att-pro", recurring=[base()]))
    [monthly] = live_subscriptions(client, cus)
    assert first.subscriptions == {"pro": monthly["id"]}

    both = [base(), base("240", "yearly", "year")]
    addon_req = request(cus, [line("240", "yearly")], key="att-yearly", recurring=both)
    addon = gateway.charge(addon_req)
    assert addon.status == "paid", addon.message
    [yearly] = [s for s in live_subscriptions(client, cus) if s["id"] != monthly["id"]]
    assert yearly["metadata"]["autumn_cycle"] == "year:1"
    assert addon.subscriptions == {"pro": monthly["id"], "yearly": yearly["id"]}
    assert gateway.charge(addon_req).subscriptions == addon.subscriptions  # a retry

    renewal = gateway.charge(request(cus, [line("20")], key="renew", reason="renewal"))
    assert renewal.status == "paid" and renewal.subscriptions == {}
    # Dropping the add-on cancels its subscription: only the monthly one is named.
    drop = gateway.charge(request(cus, [], key="drop-yearly", recurring=[base()]))
    assert drop.subscriptions == {"pro": monthly["id"]}
    assert [s["id"] for s in live_subscriptions(client, cus)] == [monthly["id"]]


def test_customer_is_found_again_by_email_and_library_id(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    first = new_customer(gateway, "user_7", key="k1")
    # Another key (Stripe forgot the first, or the caller's key changed): still one customer.
    assert new_customer(gateway, "user_7", key="k2") == first
    # Same email, another library customer: a customer of its own.
    assert (
        gateway.create_customer(
            customer_id="user_8", email="user_7@example.com", name=None, idempotency_key="k3"
        )
        != first
    )
    assert len(client.v1.customers.list({"limit": 100}).data) == 2


def test_quantity_change_modifies_the_same_subscription_item(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    first = gateway.charge(
        request(cus, [line("20", "team", "users")], key="att-seats", recurring=[seats(2)])
    )
    assert first.status == "paid", first.message
    [sub] = live_subscriptions(client, cus)
    [item] = sub["items"]["data"]
    assert (item["quantity"], item["plan"]["amount"]) == (2, 1000)

    # One more seat, prorated by the library at $5 for the rest of the period.
    more = gateway.charge(
        request(
            cus,
            [line("5", "team", "users", "1 seat, rest of period")],
            key="seat+1",
            recurring=[seats(3)],
        )
    )
    assert more.status == "paid", more.message
    [after] = live_subscriptions(client, cus)
    [item_after] = after["items"]["data"]
    assert after["id"] == sub["id"]
    assert item_after["quantity"] == 3
    assert item_after["plan"]["id"] == item["plan"]["id"]
    # The library's own $5 proration was collected; the server's own "unused time" item was
    # deleted rather than left to reduce the next invoice.
    assert collected(client, more.gateway_invoice_id) == ("paid", 500)
    assert pending_items(client, cus) == []


def test_upgrade_swaps_the_plan_on_the_same_subscription(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    gateway.charge(request(cus, [line("20")], key="att-pro", recurring=[base("20")]))
    up = gateway.charge(
        request(
            cus,
            [line("-10", "pro", None, "unused pro"), line("25", "premium", None, "premium rest")],
            key="upgrade",
            recurring=[base("50", "premium")],
        )
    )
    assert up.status == "paid", up.message
    [sub] = live_subscriptions(client, cus)
    [item] = sub["items"]["data"]
    assert item["plan"]["amount"] == 5000
    assert item["plan"]["metadata"]["autumn_product_id"] == "premium"
    assert collected(client, up.gateway_invoice_id) == ("paid", 1500)


def test_other_lines_ride_on_the_first_subscription_invoice(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    outcome = gateway.charge(
        request(
            cus,
            [line("20"), line("16", "pro", "exports", "4 packs of 50 exports")],
            key="att-packs",
            recurring=[base()],
        )
    )
    assert outcome.status == "paid", outcome.message
    [invoice] = invoices(client, cus)
    assert invoice["total"] == 3600
    amounts = sorted(ln["amount"] for ln in invoice["lines"]["data"])
    assert amounts == [1600, 2000]
    packs = next(ln for ln in invoice["lines"]["data"] if ln["amount"] == 1600)
    assert packs["metadata"]["autumn_invoice_id"] == "inv_att-packs"


def test_overage_is_invoiced_and_the_renewed_base_is_left_to_the_subscription(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    gateway.charge(request(cus, [line("20")], key="att", recurring=[base()]))
    renewal = gateway.charge(
        request(
            cus,
            [line("20", desc="pro renewal"), line("7.5", "pro", "messages", "250 extra messages")],
            key="renew-1",
            reason="renewal",
        )
    )
    assert renewal.status == "paid", renewal.message
    assert collected(client, renewal.gateway_invoice_id) == ("paid", 750)
    assert pending_items(client, cus) == []


def test_negative_total_becomes_a_pending_credit(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    gateway.charge(request(cus, [line("20")], key="att", recurring=[base()]))
    credit = gateway.charge(request(cus, [line("-4", desc="unused seats")], key="credit-1"))
    assert credit.status == "paid" and credit.gateway_invoice_id is None
    [pending] = pending_items(client, cus)
    assert pending["amount"] == -400
    assert pending["metadata"]["autumn_invoice_id"] == "inv_credit-1"
    # Stripe deducts it from the customer's next invoice (here: the next new subscription's).
    gateway.cancel_subscription(cus, idempotency_key="c")
    nxt = gateway.charge(request(cus, [line("20")], key="att-2", recurring=[base()]))
    assert collected(client, nxt.gateway_invoice_id) == ("paid", 1600)
    assert pending_items(client, cus) == []


def test_empty_recurring_cancels_the_subscription(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    gateway.charge(request(cus, [line("20")], key="att", recurring=[base()]))
    assert gateway.charge(request(cus, [], key="cancel", recurring=[])).status == "paid"
    assert live_subscriptions(client, cus) == []
    assert [s["status"] for s in all_subscriptions(client, cus)] == ["canceled"]


def test_cancel_subscription(gateway: StripeGateway, client: stripe.StripeClient) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    gateway.charge(request(cus, [line("20")], key="att", recurring=[base()]))
    gateway.cancel_subscription(cus, idempotency_key="cancel-op")
    assert live_subscriptions(client, cus) == []


# -- declines ------------------------------------------------------------------------------------
def test_declined_card_on_first_subscription_charge_is_a_failed_outcome(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus, DECLINED_ON_CHARGE)
    outcome = gateway.charge(
        request(cus, [line("20"), line("16", "pro", "exports")], key="att-d", recurring=[base()])
    )
    assert outcome.status == "failed"
    assert "declined" in outcome.message
    # Nothing left at Stripe that could be collected later.
    assert live_subscriptions(client, cus) == []
    assert pending_items(client, cus) == []


def test_declined_card_on_a_one_off_charge_is_a_failed_outcome(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    gateway.charge(request(cus, [line("20")], key="att", recurring=[base()]))
    bad = add_card(client, cus, DECLINED_ON_CHARGE)
    client.v1.customers.update(cus, {"default_source": bad})
    outcome = gateway.charge(request(cus, [line("9", "pro", "messages")], key="overage-d"))
    assert outcome.status == "failed"
    assert "declined" in outcome.message
    assert pending_items(client, cus) == []


def test_no_payment_method_leaves_the_payment_open(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    """CO4: a charge merged into a paid cycle for a card-less customer stays open, not lost."""
    cus = new_customer(gateway)
    add_card(client, cus)
    gateway.charge(request(cus, [line("20")], key="att", recurring=[base()]))
    source = as_dict(client.v1.customers.retrieve(cus))["default_source"]
    client.v1.customers.payment_sources.delete(cus, source)
    # (One item only: localstripe subscriptions cannot hold a second item.)
    outcome = gateway.charge(request(cus, [line("9", "addon")], key="addon-nopm"))
    assert outcome.status == "requires_action"
    assert collected(client, outcome.gateway_invoice_id) == ("requires_payment_method", 900)


def test_gateway_built_from_api_key_and_base_leaves_global_sdk_state_alone(
    ls: LocalStripe,
) -> None:
    before = (stripe.api_key, stripe.api_base)
    gateway = StripeGateway(api_key="sk_test_own", api_base=ls.base, max_network_retries=0)
    cus = gateway.create_customer(customer_id="g1", email=None, name=None, idempotency_key="g")
    assert cus.startswith("cus_")
    assert (stripe.api_key, stripe.api_base) == before


def test_the_default_base_is_never_contacted_from_tests() -> None:
    gateway = StripeGateway(api_key="sk_test_x", max_network_retries=0)
    with pytest.raises(GatewayError, match="could not reach Stripe"):
        gateway.has_payment_method("cus_x")  # api.stripe.com is refused by the loopback guard


# -- transport errors --------------------------------------------------------------------------
def test_unreachable_server_is_a_gateway_error() -> None:
    gateway = StripeGateway(
        api_key="sk_test_x", api_base="http://127.0.0.1:9", max_network_retries=0
    )
    with pytest.raises(GatewayError) as err:
        gateway.has_payment_method("cus_x")
    assert "could not reach Stripe" in err.value.message
    assert "idempotency key" in err.value.message


def test_amounts_are_minor_units() -> None:
    from autumn_stripe import minor_units

    assert minor_units(Decimal("20"), "usd") == 2000
    assert minor_units(Decimal("0.125"), "usd") == 13
    assert minor_units(Decimal("500"), "jpy") == 500


def test_a_charge_that_does_not_pay_the_new_price_starts_a_trialing_subscription(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    """A card-required trial: nothing is due now, Stripe must first bill at the trial end."""
    cus = new_customer(gateway)
    add_card(client, cus)
    trial_end = int(time.time()) + 14 * 86400
    outcome = gateway.charge(
        request(
            cus,
            [],
            key="att-trial",
            recurring=[base()],
            period_end=datetime.fromtimestamp(trial_end, UTC),
        )
    )
    assert (outcome.status, outcome.gateway_invoice_id) == ("paid", None)
    [sub] = all_subscriptions(client, cus)
    assert sub["trial_end"] == trial_end
    assert sub["items"]["data"][0]["plan"]["amount"] == 2000
    assert invoices(client, cus) == []  # nothing charged
