"""The Gateway contract suite: what the engine relies on from a payment provider adapter.

A pytest suite (``pytest`` is needed; nothing else in ``autumn_core`` imports it). Subclass
``GatewayContract`` and implement ``make_gateway`` (new customers have no card) and
``give_card``; add ``CheckoutContract`` when the provider (or its test double) serves hosted
checkout and billing-portal pages::

    from autumn_core.testing.gateway_contract import CheckoutContract, GatewayContract

    class TestMyGateway(GatewayContract, CheckoutContract):
        def make_gateway(self) -> Gateway:
            return MyGateway(api_base=SANDBOX)

        def give_card(self, gateway: Gateway, gateway_customer_id: str, *, declining=False):
            my_sandbox.add_card(gateway_customer_id, DECLINING if declining else GOOD)
"""

from __future__ import annotations

import pytest

# Installed modules are not test files: ask pytest to rewrite their asserts, before importing.
pytest.register_assert_rewrite(f"{__name__}._suite")

from autumn_core.testing.gateway_contract._suite import (  # noqa
    CheckoutContract,
    GatewayContract,
    GatewayTestBase,
    charge_request,
)

__all__ = ["CheckoutContract", "GatewayContract", "GatewayTestBase", "charge_request"]
