"""``StripeGateway``: the ``autumn_core.ports.Gateway`` port on the official ``stripe`` SDK.

Design notes (why, not what):

- **No global SDK state.** Every call goes through one ``stripe.StripeClient`` (passed in, or
  built from ``api_key`` + ``api_base``), so several gateways (tests, tenants, localstripe next to
  real Stripe) can live in one process.
- **Deterministic idempotency keys.** Every write carries ``<request key>:<step>``; a retry of
  the same engine operation (after a timeout or a crash) is replayed by Stripe instead of
  charging twice. Objects that outlive one operation (products, plans, the per-cycle
  subscription) are additionally *found again* by deterministic id or metadata, so they are never
  created twice even after Stripe forgets a key (24 h) or on a server that ignores keys.
- **Stripe mirrors, the library decides.** The library computes every amount and period. A
  customer's recurring fixed prices live in one Stripe subscription per billing cycle (a
  monthly product and a yearly add-on make two), tagged ``metadata.autumn_cycle``; each
  charge with ``recurring`` reports which one bills each product
  (``ChargeOutcome.subscriptions``), so a deleted subscription ends only its products (W6). A *new* subscription's first
  invoice collects the lines it covers (the full-period fixed prices) and sweeps the request's
  other lines, added just before as pending invoice items, into the same invoice: one Stripe
  invoice per charge. Changes to an existing subscription are made without Stripe prorations
  (``proration_behavior="none"``) because the library's own proration lines are invoiced
  explicitly (invoice items + invoice, finalize, pay).
- **Renewals.** Stripe renews a subscription by itself. When the engine asks for a renewal charge
  (``recurring is None`` and ``reason`` "renewal", "conversion" or "switch"), lines equal to a subscription item's full price are left to Stripe's
  own renewal invoice and only the rest (overage) is invoiced, so fixed prices are never charged
  twice.
- **Credits are the engine's (P12).** The engine keeps a customer's credit and spends it on the
  next invoices itself (an ``Applied credit balance`` line), so a negative total never reaches
  the gateway as money and Stripe never holds the same credit a second time. A negative line
  of a positive charge (unused time of an upgrade, applied credit) is a negative invoice item
  on the same Stripe invoice, or is netted into the PaymentIntent amount. A request whose total
  is negative (an engine from before P12, a direct caller) still becomes pending negative
  invoice items, which Stripe deducts from the customer's next invoice.
- **Declines are outcomes, outages are errors.** A declined card gives
  ``ChargeOutcome(status="failed")`` after undoing what the failed charge created at Stripe
  (pending items deleted, incomplete subscription canceled, open invoice voided); rate limits,
  network and 5xx errors raise ``GatewayError`` (see ``autumn_stripe.errors``).
"""

from __future__ import annotations

import stripe

from autumn_core.errors import InvalidRequest
from autumn_core.results import GatewayEvent
from autumn_stripe import webhooks
from autumn_stripe.checkout import StripeCheckout
from autumn_stripe.recovery import StripeRecovery


class StripeGateway(StripeRecovery, StripeCheckout):
    """The payment-provider port backed by Stripe (or a Stripe-compatible server).

    Three switches exist only for servers that implement less than Stripe (see
    :meth:`for_localstripe`); their defaults are right for real Stripe:

    - ``send_proration_behavior=False``: localstripe 500s on it. Any proration item the server
      generates for a subscription update is deleted instead, so the library's own proration
      lines stay the only ones.
    - ``finalize_invoices=False``: localstripe has no ``/finalize`` (its ``/pay`` finalizes).
    - ``one_off="payment_intent"``: localstripe's ``POST /v1/invoices`` refuses a customer
      without a subscription and, for one with a subscription, bills the subscription's items
      again, so one-off amounts are collected with a confirmed off-session PaymentIntent
      (``gateway_invoice_id`` is then the PaymentIntent id).
    """

    @classmethod
    def for_localstripe(
        cls,
        client: stripe.StripeClient | None = None,
        *,
        api_base: str | None = None,
        api_key: str = "sk_test_localstripe",
        webhook_secret: str | None = None,
        currency: str = "usd",
    ) -> StripeGateway:
        """A gateway that stays within what localstripe 1.15 implements (tests, local dev)."""
        return cls(
            client,
            api_key=api_key,
            api_base=api_base,
            webhook_secret=webhook_secret,
            currency=currency,
            max_network_retries=0,
            send_proration_behavior=False,
            finalize_invoices=False,
            one_off="payment_intent",
        )

    def parse_webhook(self, payload: bytes, signature_header: str) -> GatewayEvent:
        """Verify a webhook delivery with ``webhook_secret`` and translate it."""
        if not self.webhook_secret:
            raise InvalidRequest("StripeGateway was built without webhook_secret")
        event = webhooks.parse(
            payload,
            signature_header,
            self.webhook_secret,
            tolerance=self.webhook_tolerance,
            now=self._clock,
        )
        self._observe(event)
        return event

    def _observe(self, event: GatewayEvent) -> None:
        """Forget what an event may have made stale (cards, subscriptions) in this instance.

        Only events delivered to this instance are seen; other processes' caches expire after
        ``cache_ttl``, and neither cache can cause a double charge (see ``charge``).
        """
        gid = event.gateway_customer_id
        if event.type.startswith("stripe.customer.") and not event.type.startswith(
            "stripe.customer.subscription"
        ):
            object_id = event.data.get("id")
            gid = gid or (object_id if isinstance(object_id, str) else None)
        if gid is not None:
            self.forget(gid)
        elif event.type in ("stripe.payment_method.detached", "payment.failed"):
            self.forget()  # a detached payment method no longer names its customer
