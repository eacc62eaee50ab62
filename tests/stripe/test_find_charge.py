"""``StripeGateway.find_charge`` and the per-customer caches, against localstripe.

``find_charge`` is what ``recover()`` asks instead of charging again: it must tell a charge that
reached Stripe (paid, open, failed) from one that never did (None), make no new charge, and leave
nothing collectable behind a charge it reports as not made.
"""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from autumn_stripe import StripeGateway

from .helpers import (
    DECLINED_ON_CHARGE,
    add_card,
    all_subscriptions,
    as_dict,
    base,
    card_token,
    invoices,
    line,
    live_subscriptions,
    pending_items,
    request,
)

pytestmark = pytest.mark.stripe


def new_customer(gateway: StripeGateway, cid: str = "user_1") -> str:
    return gateway.create_customer(
        customer_id=cid, email=f"{cid}@example.com", name="Ada", idempotency_key=f"cus-{cid}"
    )


def intents(client: stripe.StripeClient, cus: str) -> list[dict[str, Any]]:
    listed = client.v1.payment_intents.list({"limit": 100}).data
    return [d for d in (as_dict(p) for p in listed) if d.get("customer") == cus]


def test_a_charge_never_sent_is_none_and_nothing_is_made(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    req = request(cus, [line("20")], key="att:never", recurring=[base()])
    assert gateway.find_charge(req) is None
    assert all_subscriptions(client, cus) == []
    assert invoices(client, cus) == []
    assert intents(client, cus) == []


def test_a_paid_first_subscription_is_found_paid_without_charging_again(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    req = request(cus, [line("20")], key="att:paid", recurring=[base()])
    outcome = gateway.charge(req)
    assert outcome.status == "paid"
    before = invoices(client, cus)
    found = gateway.find_charge(req)
    assert found is not None
    assert (found.status, found.gateway_invoice_id) == ("paid", outcome.gateway_invoice_id)
    assert invoices(client, cus) == before
    [sub] = live_subscriptions(client, cus)
    # recover() records which subscription bills the product, as the charge itself would have.
    assert found.subscriptions == outcome.subscriptions == {"pro": sub["id"]}


def test_a_declined_first_charge_is_found_failed(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus, DECLINED_ON_CHARGE)
    req = request(cus, [line("20")], key="att:declined", recurring=[base()])
    assert gateway.charge(req).status == "failed"
    found = gateway.find_charge(req)
    assert found is not None and found.status == "failed"
    assert live_subscriptions(client, cus) == []


def test_a_one_off_payment_is_found_by_its_key(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    req = request(cus, [line("15", "pack")], key="att:pack")
    outcome = gateway.charge(req)
    assert outcome.status == "paid"
    assert intents(client, cus)[0]["metadata"]["autumn_charge_key"] == "att:pack"
    found = gateway.find_charge(req)
    assert found is not None
    assert (found.status, found.gateway_invoice_id) == ("paid", outcome.gateway_invoice_id)
    assert len(intents(client, cus)) == 1
    other = request(cus, [line("15", "pack")], key="att:other-pack")
    assert gateway.find_charge(other) is None


def test_items_of_a_charge_that_died_before_its_invoice_are_deleted(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    """Left pending they would ride on the customer's next invoice: rolled back, nothing owed."""
    cus = new_customer(gateway)
    add_card(client, cus)
    req = request(cus, [line("20"), line("16", "pro", "exports")], key="att:half")
    client.v1.invoice_items.create(
        {
            "customer": cus,
            "amount": 1600,
            "currency": "usd",
            "metadata": {"autumn_charge_key": "att:half", "autumn_invoice_id": req.invoice_id},
        }
    )
    assert gateway.find_charge(req) is None
    assert pending_items(client, cus) == []


def test_a_pending_credit_is_found_paid_and_not_made_twice(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    add_card(client, cus)
    gateway.charge(request(cus, [line("20")], key="att", recurring=[base()]))
    req = request(cus, [line("-5", "pro", None, "unused")], key="cancel:credit")
    assert gateway.charge(req).status == "paid"
    found = gateway.find_charge(req)
    assert found is not None and found.status == "paid"
    assert [i["amount"] for i in pending_items(client, cus)] == [-500]


# -- what the gateway remembers instead of asking -------------------------------------------
def test_a_card_attached_through_the_gateway_needs_no_lookup(
    gateway: StripeGateway, client: stripe.StripeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    cus = new_customer(gateway)
    gateway.attach_payment_method(cus, card_token(client))
    assert as_dict(client.v1.customers.retrieve(cus))["default_source"]

    def no_lookup(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("has_payment_method asked Stripe")

    monkeypatch.setattr(gateway.client.v1.customers, "retrieve", no_lookup)
    assert gateway.has_payment_method(cus)
    gateway.forget(cus)
    with pytest.raises(AssertionError):
        gateway.has_payment_method(cus)


def test_a_customer_just_created_is_charged_without_listing_subscriptions(
    gateway: StripeGateway, client: stripe.StripeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its first charge skips the list once; the next one lists (and finds the subscription)."""
    cus = new_customer(gateway)
    gateway.attach_payment_method(cus, card_token(client))
    calls: list[str] = []
    listing = gateway.subscriptions

    def counted(gid: str) -> dict[str, dict[str, Any]]:
        calls.append(gid)
        return listing(gid)

    monkeypatch.setattr(gateway, "subscriptions", counted)
    assert gateway.charge(request(cus, [line("20")], key="a1", recurring=[base()])).status == "paid"
    assert calls == []
    premium = base("50", "premium")
    outcome = gateway.charge(request(cus, [line("30", "premium")], key="a2", recurring=[premium]))
    assert outcome.status == "paid"
    assert calls == [cus]
    [sub] = live_subscriptions(client, cus)
    assert [i["plan"]["amount"] for i in sub["items"]["data"]] == [5000]


def test_a_declined_charge_forgets_the_card(
    gateway: StripeGateway, client: stripe.StripeClient
) -> None:
    cus = new_customer(gateway)
    gateway.attach_payment_method(cus, card_token(client, DECLINED_ON_CHARGE))
    assert gateway._knows(gateway._pm_known, cus)
    assert (
        gateway.charge(request(cus, [line("20")], key="d", recurring=[base()])).status == "failed"
    )
    assert not gateway._knows(gateway._pm_known, cus)
