"""Checkout and the billing portal: the customer pays (or manages cards) on Stripe's pages."""

from __future__ import annotations

from typing import Any, cast

from autumn_core.errors import GatewayError, InvalidRequest
from autumn_core.ports import ChargeLine, CheckoutRequest
from autumn_stripe.plumbing import PricedLine, minor_units
from autumn_stripe.subscriptions import StripeSubscriptions


class StripeCheckout(StripeSubscriptions):
    """Checkout and the billing portal: the customer pays (or manages cards) on Stripe's pages."""

    def create_checkout(self, request: CheckoutRequest) -> str:
        """A Checkout Session: ``mode=subscription`` for recurring prices, else ``mode=payment``.

        With ``request.recurring`` the session starts the cycle's Stripe subscription itself
        (tagged ``autumn_cycle`` like one the gateway creates, so the engine's later charges
        find and modify it): the plans are its line items and the request's other lines ride
        on its first invoice as one-time items. Checkout can do that only when the lines pay
        every plan's full price (no trial, no proration), nothing is a credit and all plans
        share one billing cycle, and the customer has no live subscription of that cycle yet
        (a second one would bill its prices twice; a customer this instance has just created is
        known to have none, otherwise the subscriptions are listed); otherwise (and for a
        one-off payment) the session is in payment mode and saves the card.

        Once completed, the ``checkout.session.completed`` event carries the subscription's id
        (``subscription``), which the engine records on the products it provisions (W6).
        """
        currency = (request.currency or self.currency).lower()
        fresh = self._take_fresh(request.gateway_customer_id)
        if request.recurring:
            session_params = self._subscription_checkout(request, currency, fresh=fresh)
            if session_params is not None:
                return self._open_checkout(request, session_params)
        amounts = [(ln, minor_units(ln.amount, currency)) for ln in request.lines]
        if any(a < 0 for _, a in amounts):
            # Checkout cannot show credits: charge the net total as one line.
            amounts = [
                (
                    ChargeLine(description="Total due", amount=request.total),
                    minor_units(request.total, currency),
                )
            ]
        line_items = [
            {
                "quantity": 1,
                "price_data": {
                    "currency": currency,
                    "unit_amount": amount,
                    "product_data": {"name": ln.description or ln.product_id or "Charge"},
                },
            }
            for ln, amount in amounts
            if amount > 0
        ]
        if not line_items:
            raise InvalidRequest("a checkout needs a positive amount due")
        params: dict[str, Any] = {
            "mode": "payment",
            "customer": request.gateway_customer_id,
            "client_reference_id": request.pending_key,
            "line_items": line_items,
            "metadata": {"autumn_pending_key": request.pending_key},
            "payment_intent_data": {
                "setup_future_usage": "off_session",
                "metadata": {"autumn_pending_key": request.pending_key},
            },
            "invoice_creation": {
                "enabled": True,
                "invoice_data": {"metadata": {"autumn_pending_key": request.pending_key}},
            },
        }
        return self._open_checkout(request, params)

    def _subscription_checkout(
        self, request: CheckoutRequest, currency: str, *, fresh: bool
    ) -> dict[str, Any] | None:
        """Session parameters in subscription mode, or None when Checkout cannot express it."""
        assert request.recurring is not None
        items = self._items(request.recurring, currency)
        cycles = {item.cycle for item in items}
        lines = [
            PricedLine(i, ln, minor_units(ln.amount, currency))
            for i, ln in enumerate(request.lines)
        ]
        lines = [ln for ln in lines if ln.amount != 0]
        if len(cycles) != 1 or any(ln.amount < 0 for ln in lines):
            return None
        rest = self._cover(lines, items)
        if rest is None:
            return None
        [cycle] = cycles
        if not fresh and cycle in self.subscriptions(request.gateway_customer_id):
            return None  # the cycle's subscription exists: a second would bill it twice
        for item in items:
            self.ensure_plan(item)
        pending = request.pending_key
        line_items: list[dict[str, Any]] = [
            {"price": item.plan_id, "quantity": item.quantity} for item in items
        ]
        line_items += [
            {
                "quantity": 1,
                "price_data": {
                    "currency": currency,
                    "unit_amount": ln.amount,
                    "product_data": {"name": ln.line.description or ln.line.product_id or "Charge"},
                },
            }
            for ln in rest
        ]
        return {
            "mode": "subscription",
            "customer": request.gateway_customer_id,
            "client_reference_id": pending,
            "line_items": line_items,
            "metadata": {"autumn_pending_key": pending},
            "subscription_data": {
                "metadata": {
                    "autumn_cycle": cycle,
                    "autumn_created_by": request.idempotency_key[:500],
                    "autumn_pending_key": pending,
                },
            },
        }

    def _open_checkout(self, request: CheckoutRequest, params: dict[str, Any]) -> str:
        if request.success_url:
            params["success_url"] = request.success_url
        session = self._call(
            "checkout session creation",
            self.client.v1.checkout.sessions.create,
            cast(Any, params),
            self._key(request.idempotency_key, "checkout"),
        )
        if not session.url:
            raise GatewayError(f"Stripe returned checkout session {session.id} without a url")
        return str(session.url)

    def billing_portal_url(self, gateway_customer_id: str, return_url: str | None) -> str:
        """A short-lived billing portal session (not idempotent: each visit needs a fresh one)."""
        self._take_fresh(gateway_customer_id)  # the portal may change subscriptions
        params: dict[str, Any] = {"customer": gateway_customer_id}
        if return_url:
            params["return_url"] = return_url
        session = self._call(
            "billing portal session creation",
            self.client.v1.billing_portal.sessions.create,
            cast(Any, params),
        )
        return str(session.url)
