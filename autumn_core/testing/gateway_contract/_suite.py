"""The parts of the Gateway contract (the ``Gateway`` port of ``autumn_core.ports``)."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest

from autumn_core.ports import (
    ChargeLine,
    ChargeLookup,
    ChargeOutcome,
    ChargeRequest,
    CheckoutRequest,
    Gateway,
    RecurringPrice,
)

D = Decimal


def unique(prefix: str) -> str:
    """A fresh key, so tests sharing a provider (a sandbox server) never collide."""
    return f"{prefix}-{os.urandom(6).hex()}"


def base_price(amount: str = "20", product: str = "pro") -> RecurringPrice:
    return RecurringPrice(
        product_id=product,
        feature_id=None,
        unit_amount=D(amount),
        quantity=D(1),
        interval="month",
        interval_count=1,
    )


def charge_request(
    customer: str,
    *amounts: str,
    key: str | None = None,
    recurring: tuple[RecurringPrice, ...] | None = None,
    reason: str = "attach",
) -> ChargeRequest:
    """A charge of one line per amount (product ``pro``), under a fresh key unless given."""
    lines = tuple(ChargeLine(f"pro line {i}", D(a), "pro") for i, a in enumerate(amounts))
    key = key or unique("charge")
    return ChargeRequest(
        gateway_customer_id=customer,
        invoice_id=f"inv_{key}",
        lines=lines,
        total=sum((ln.amount for ln in lines), D(0)),
        currency="usd",
        idempotency_key=key,
        recurring=recurring,
        reason=reason,
    )


class GatewayTestBase:
    """Owns the ``gateway`` fixture; adapters implement ``make_gateway`` and ``give_card``."""

    #: The provider itself answers a repeated idempotency key with its first response (Stripe
    #: does for 24 h). False only for a sandbox that ignores keys (localstripe): the test of a
    #: retried charge is then skipped, saying so, and recovery rests on ``find_charge``.
    provider_replays_keys: bool = True

    def make_gateway(self) -> Gateway:
        """A gateway whose new customers have no payment method yet."""
        raise NotImplementedError

    def give_card(self, gateway: Gateway, gateway_customer_id: str, *, declining: bool) -> None:
        """Give the customer a card, as if they had entered it; with ``declining=True`` a card
        that is accepted but whose every charge is declined."""
        raise NotImplementedError

    @pytest.fixture
    def gateway(self) -> Gateway:
        return self.make_gateway()

    @staticmethod
    def new_customer(gateway: Gateway, customer_id: str | None = None) -> str:
        return gateway.create_customer(
            customer_id=customer_id or unique("user"),
            email="ann@example.com",
            name="Ann",
            idempotency_key=unique("customer"),
        )

    def customer_with_card(self, gateway: Gateway, *, declining: bool = False) -> str:
        gid = self.new_customer(gateway)
        self.give_card(gateway, gid, declining=declining)
        return gid


class GatewayContract(GatewayTestBase):
    """Customers, cards, charges and their keys, credits, subscriptions, lookups."""

    # -- customers -----------------------------------------------------------------------------
    def test_a_customer_is_created_once_per_key(self, gateway: Gateway) -> None:
        """Given a customer created under a key, when the engine retries with the same key,
        then it gets the same provider id; another key makes another customer."""
        # given
        key = unique("customer")
        first = gateway.create_customer(
            customer_id="u1", email="ann@example.com", name=None, idempotency_key=key
        )
        # when
        again = gateway.create_customer(
            customer_id="u1", email="ann@example.com", name=None, idempotency_key=key
        )
        other = self.new_customer(gateway)
        # then
        assert first and isinstance(first, str)
        assert again == first
        assert other != first

    def test_a_new_customer_has_no_payment_method_until_given_a_card(
        self, gateway: Gateway
    ) -> None:
        """Given a new customer, then no payment method; when a card is given, then one."""
        # given
        gid = self.new_customer(gateway)
        # then
        assert gateway.has_payment_method(gid) is False
        # when
        self.give_card(gateway, gid, declining=False)
        # then
        assert gateway.has_payment_method(gid) is True

    # -- charges -------------------------------------------------------------------------------
    def test_a_charge_with_a_card_is_paid(self, gateway: Gateway) -> None:
        """Given a customer with a card, when $15 is charged, then the outcome is paid and
        names the provider's record of the payment."""
        # given
        gid = self.customer_with_card(gateway)
        # when
        outcome = gateway.charge(charge_request(gid, "15"))
        # then
        assert isinstance(outcome, ChargeOutcome)
        assert outcome.status == "paid"
        assert outcome.gateway_invoice_id

    def test_a_retried_key_returns_the_first_outcome(self, gateway: Gateway) -> None:
        """Given a paid charge, when the engine sends it again with the same key (a retry
        after a crash), then the first outcome comes back: the same payment, not a second."""
        if not self.provider_replays_keys:
            pytest.skip("this provider sandbox ignores idempotency keys")
        # given
        gid = self.customer_with_card(gateway)
        request = charge_request(gid, "15")
        first = gateway.charge(request)
        # when
        again = gateway.charge(request)
        # then
        assert (again.status, again.gateway_invoice_id) == ("paid", first.gateway_invoice_id)

    def test_another_key_is_another_payment(self, gateway: Gateway) -> None:
        """Given a paid charge, when the same lines are charged under another key, then it is
        another payment."""
        # given
        gid = self.customer_with_card(gateway)
        first = gateway.charge(charge_request(gid, "15"))
        # when
        second = gateway.charge(charge_request(gid, "15"))
        # then
        assert second.status == "paid"
        assert second.gateway_invoice_id != first.gateway_invoice_id

    def test_a_declined_card_is_a_failed_outcome_not_an_exception(self, gateway: Gateway) -> None:
        """Given a customer whose card declines, when a positive amount is charged, then the
        outcome is failed with a message (the engine then provisions nothing)."""
        # given
        gid = self.customer_with_card(gateway, declining=True)
        # when
        outcome = gateway.charge(charge_request(gid, "20"))
        # then
        assert outcome.status == "failed"
        assert outcome.message

    def test_a_negative_total_is_a_credit_and_paid(self, gateway: Gateway) -> None:
        """Given a paying customer, when a refund (negative total) is sent, then it is paid:
        nothing is collected and nothing fails."""
        # given
        gid = self.customer_with_card(gateway)
        gateway.charge(charge_request(gid, "20", recurring=(base_price(),)))
        # when
        outcome = gateway.charge(charge_request(gid, "-4", reason="cancel"))
        # then
        assert outcome.status == "paid"

    # -- subscriptions -------------------------------------------------------------------------
    def test_a_recurring_charge_names_the_subscription_of_its_product(
        self, gateway: Gateway
    ) -> None:
        """Given a customer with a card, when a charge carries the product's recurring price,
        then the outcome names, for that product, the provider subscription billing it."""
        # given
        gid = self.customer_with_card(gateway)
        # when
        outcome = gateway.charge(charge_request(gid, "20", recurring=(base_price(),)))
        # then
        assert outcome.status == "paid"
        assert set(outcome.subscriptions) == {"pro"}
        assert outcome.subscriptions["pro"]

    def test_cancel_subscription_is_repeatable(self, gateway: Gateway) -> None:
        """Given a customer billed by a subscription, when the engine cancels it twice (a
        retry), then neither call fails, and a new cycle can be charged afterwards."""
        # given
        gid = self.customer_with_card(gateway)
        gateway.charge(charge_request(gid, "20", recurring=(base_price(),)))
        # when
        gateway.cancel_subscription(gid, idempotency_key=unique("cancel"))
        gateway.cancel_subscription(gid, idempotency_key=unique("cancel"))
        # then
        again = gateway.charge(charge_request(gid, "20", recurring=(base_price(),)))
        assert again.status == "paid"

    # -- lookups (the optional ChargeLookup capability used by recover()) --------------------
    def test_a_charge_never_sent_is_not_found(self, gateway: Gateway) -> None:
        """Given a charge the provider never received, when recovery looks it up by key,
        then it is not found (and looking made no payment)."""
        if not isinstance(gateway, ChargeLookup):
            pytest.skip("no ChargeLookup: recover() re-drives the charge with the same key")
        # given
        gid = self.customer_with_card(gateway)
        request = charge_request(gid, "20")
        # when / then
        assert gateway.find_charge(request) is None
        assert gateway.find_charge(request) is None

    def test_a_charge_made_is_found_by_its_key(self, gateway: Gateway) -> None:
        """Given a paid charge, when recovery looks it up by key, then it finds that payment."""
        if not isinstance(gateway, ChargeLookup):
            pytest.skip("no ChargeLookup: recover() re-drives the charge with the same key")
        # given
        gid = self.customer_with_card(gateway)
        request = charge_request(gid, "15")
        made = gateway.charge(request)
        # when
        found = gateway.find_charge(request)
        # then
        assert found is not None
        assert (found.status, found.gateway_invoice_id) == ("paid", made.gateway_invoice_id)


class CheckoutContract(GatewayTestBase):
    """Hosted pages: a checkout for a card-less customer, the billing portal."""

    def test_a_checkout_is_one_page_per_key(self, gateway: Gateway) -> None:
        """Given a card-less customer, when the engine asks twice for the checkout of one
        pending plan (same key), then it gets one page URL; another plan gets another."""
        # given
        gid = self.new_customer(gateway)
        key = unique("checkout")

        def checkout(key: str) -> str:
            return gateway.create_checkout(
                CheckoutRequest(
                    gateway_customer_id=gid,
                    pending_key=key,
                    lines=(ChargeLine("pro", D(20), "pro"),),
                    total=D(20),
                    currency="usd",
                    success_url="https://example.com/done",
                    idempotency_key=key,
                    recurring=(base_price(),),
                )
            )

        # when
        first, again, other = checkout(key), checkout(key), checkout(unique("checkout"))
        # then
        assert first.startswith("https://")
        assert again == first
        assert other != first

    def test_the_billing_portal_is_a_page_of_the_customer(self, gateway: Gateway) -> None:
        """Given a customer, when the engine asks for the billing portal, then it gets a URL."""
        gid = self.customer_with_card(gateway)
        assert gateway.billing_portal_url(gid, "https://example.com/back").startswith("https://")
