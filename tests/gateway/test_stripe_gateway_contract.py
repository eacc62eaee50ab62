"""StripeGateway against a live localstripe, through the Gateway contract.

localstripe serves no Checkout Sessions and no billing portal, so ``CheckoutContract`` is not
part of this class; those calls are proven against recorded Stripe responses
(``tests/stripe/test_recorded.py``). It also ignores idempotency keys (see below).
"""

from __future__ import annotations

import pytest

from autumn_core.ports import Gateway
from autumn_core.testing.gateway_contract import GatewayContract
from autumn_stripe import StripeGateway
from tests.stripe.conftest import WEBHOOK_SECRET, LocalStripe
from tests.stripe.helpers import DECLINED_ON_CHARGE, GOOD_CARD, add_card

pytestmark = pytest.mark.stripe


class TestStripeGatewayOnLocalstripe(GatewayContract):
    #: localstripe ignores ``Idempotency-Key`` (LOCALSTRIPE.md): a one-off payment sent twice
    #: under one key is two PaymentIntents there. Real Stripe replays the first response.
    provider_replays_keys = False

    @pytest.fixture(autouse=True)
    def _server(self, ls: LocalStripe) -> None:
        self.server = ls

    def make_gateway(self) -> Gateway:
        return StripeGateway.for_localstripe(self.server.client(), webhook_secret=WEBHOOK_SECRET)

    def give_card(self, gateway: Gateway, gateway_customer_id: str, *, declining: bool) -> None:
        assert isinstance(gateway, StripeGateway)
        add_card(
            gateway.client, gateway_customer_id, DECLINED_ON_CHARGE if declining else GOOD_CARD
        )
