"""MemoryGateway, the in-process provider, through the whole Gateway contract."""

from __future__ import annotations

from autumn_core.ports import Gateway
from autumn_core.testing.gateway_contract import CheckoutContract, GatewayContract
from autumn_memory import MemoryGateway


class TestMemoryGateway(GatewayContract, CheckoutContract):
    def make_gateway(self) -> Gateway:
        return MemoryGateway(card_on_file=False)

    def give_card(self, gateway: Gateway, gateway_customer_id: str, *, declining: bool) -> None:
        assert isinstance(gateway, MemoryGateway)
        gateway.set_payment_method(gateway_customer_id)
        if declining:
            gateway.decline_next(100)
