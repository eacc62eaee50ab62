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

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, TypeVar, cast

import attrs
import stripe

from autumn_core.errors import GatewayError, InvalidRequest, PaymentFailed
from autumn_core.ports import (
    ChargeLine,
    ChargeOutcome,
    ChargeRequest,
    CheckoutRequest,
    RecurringPrice,
)
from autumn_core.results import GatewayEvent
from autumn_stripe import webhooks
from autumn_stripe.errors import translate, translated

_T = TypeVar("_T")

#: Currencies Stripe counts in whole units (no cents).
ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)

#: The library's intervals (docs/rules.md U4) as Stripe (interval, interval_count multiplier).
_INTERVALS: Mapping[str, tuple[str, int]] = {
    "day": ("day", 1),
    "week": ("week", 1),
    "month": ("month", 1),
    "quarter": ("month", 3),
    "semi_annual": ("month", 6),
    "year": ("year", 1),
}

_LIVE_SUB = frozenset({"active", "trialing", "past_due", "unpaid", "incomplete", "paused"})
_MAX_KEY = 255  # Stripe's idempotency key limit
#: ``ChargeRequest.reason`` s whose full-price lines a live subscription item bills by itself
#: (a renewal, a trial's conversion, a scheduled product starting). A seat, quantity, cancel or
#: attach charge is always collected now, even when a line happens to equal an item's price.
_SELF_RENEWING = frozenset({"renewal", "conversion", "switch"})


def minor_units(amount: Decimal, currency: str) -> int:
    """Decimal major units -> Stripe's integer minor units (half-up to the cent)."""
    factor = 1 if currency.lower() in ZERO_DECIMAL else 100
    return int((amount * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _slug(value: str) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", value)[:40]
    return f"{clean}_{digest}"


@attrs.frozen
class _Item:
    """One desired subscription item: a plan (found or created) and its quantity."""

    plan_id: str
    product_id: str
    feature_id: str | None
    amount: int  # minor units per unit
    quantity: int
    interval: str
    interval_count: int
    currency: str

    @property
    def cycle(self) -> str:
        return f"{self.interval}:{self.interval_count}"

    @property
    def full_amount(self) -> int:
        return self.amount * self.quantity


@attrs.frozen
class _Line:
    index: int
    line: ChargeLine
    amount: int  # minor units


class _NoPaymentMethod(Exception):
    """The customer has no payment method: the invoice (or payment) stays open for them."""

    def __init__(self, invoice: Mapping[str, Any]) -> None:
        super().__init__(f"invoice {invoice.get('id')} left open")
        self.invoice = invoice


class _FirstTaken(Exception):
    """Another operation already created the customer's first subscription for this cycle.

    Raised when the per-customer "first subscription" idempotency key was used with other
    parameters (Stripe answers 400 ``idempotency_error``): the charge is re-planned from a
    fresh subscription list instead of creating a second subscription.
    """


class _Declined(Exception):
    """A card decline on an invoice we created: carries the invoice to void."""

    def __init__(self, message: str, invoice_id: str) -> None:
        super().__init__(message)
        self.message = message
        self.invoice_id = invoice_id


def _as_dict(obj: Any) -> dict[str, Any]:
    """SDK objects are not dicts in stripe>=15; work on plain data everywhere."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return dict(obj)


class StripeGateway:
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

    def __init__(
        self,
        client: stripe.StripeClient | None = None,
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        webhook_secret: str | None = None,
        currency: str = "usd",
        max_network_retries: int = 2,
        send_proration_behavior: bool = True,
        finalize_invoices: bool = True,
        one_off: Literal["invoice", "payment_intent"] = "invoice",
        webhook_tolerance: int = webhooks.DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = 60.0,
    ) -> None:
        if client is None:
            if not api_key:
                raise InvalidRequest("StripeGateway needs a stripe.StripeClient or an api_key")
            client = stripe.StripeClient(
                api_key,
                base_addresses={"api": api_base} if api_base else None,
                max_network_retries=max_network_retries,
            )
        self.client = client
        self.currency = currency.lower()
        self.webhook_secret = webhook_secret
        self.webhook_tolerance = webhook_tolerance
        self.send_proration_behavior = send_proration_behavior
        self.finalize_invoices = finalize_invoices
        self.one_off = one_off
        self._clock = clock
        self._known_plans: set[str] = set()
        self._known_products: set[str] = set()
        self._lock = threading.Lock()
        #: How long (s) what this instance learned about a customer stands in for a request.
        self.cache_ttl = cache_ttl
        #: Customers known to have a usable default payment method (a card this gateway
        #: attached, or a "yes" from ``has_payment_method``) until the deadline. Dropped when a
        #: charge is not paid and on webhooks that can remove a card.
        self._pm_known: dict[str, float] = {}
        #: Customers this instance has just created (so they have no subscription yet), until
        #: the deadline. Consumed by the customer's first charge, checkout, portal session or
        #: cancel, and by any webhook about the customer: the first charge skips the
        #: subscription list. Safe across processes: see ``_create_subscription`` (``first``).
        self._fresh: dict[str, float] = {}

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

    # -- plumbing ------------------------------------------------------------------------------
    @staticmethod
    def _key(base: str, step: str) -> stripe.RequestOptions:
        """Request options carrying the deterministic idempotency key ``<base>:<step>``."""
        key = f"{base}:{step}"
        if len(key) > _MAX_KEY:
            key = f"{hashlib.sha256(base.encode()).hexdigest()}:{step}"[:_MAX_KEY]
        return {"idempotency_key": key}

    def _call(self, step: str, fn: Callable[..., _T], *args: Any) -> _T:
        """Run one SDK call; its errors become the library's through ``errors.translate``.

        Every SDK error of the gateway goes through that one function; the few call sites that
        catch an SDK error themselves do so to branch (404 → create, decline → outcome, no
        payment method → open invoice) and still use it for the error they raise.
        """
        with translated(step):
            return fn(*args)

    def _get_or_none(self, step: str, fn: Callable[..., Any], *args: Any) -> dict[str, Any] | None:
        """Retrieve an object, or None when Stripe answers 404 (for find-or-create)."""
        try:
            return _as_dict(fn(*args))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise translate(exc, step) from exc
        except stripe.StripeError as exc:
            raise translate(exc, step) from exc

    # -- customers -----------------------------------------------------------------------------
    def create_customer(
        self, *, customer_id: str | None, email: str | None, name: str | None, idempotency_key: str
    ) -> str:
        """Create the Stripe customer, tagged with the library's id to find it from Stripe.

        With an id and an email, a customer this library already created for that id is found
        again (list by email is strongly consistent, unlike Stripe's search) and reused: a
        process that died after Stripe created the customer, or a retry after Stripe forgot the
        idempotency key, must not leave a second customer behind.
        """
        if customer_id and email:
            found = self._call(
                "customer lookup",
                self.client.v1.customers.list,
                {"email": email, "limit": 100},
            )
            for candidate in found.data:
                meta = _as_dict(candidate).get("metadata") or {}
                if meta.get("autumn_customer_id") == customer_id:
                    return str(candidate.id)
        params: dict[str, Any] = {"metadata": {"autumn_customer_id": customer_id or ""}}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        created = self._call(
            "customer creation",
            self.client.v1.customers.create,
            params,
            self._key(idempotency_key, "customer"),
        )
        gid = str(created.id)
        self._remember(self._fresh, gid)
        return gid

    # -- what this instance knows without asking (per customer, short-lived) -----------------
    def _remember(self, cache: dict[str, float], gid: str) -> None:
        with self._lock:
            cache[gid] = self._clock() + self.cache_ttl

    def _knows(self, cache: dict[str, float], gid: str) -> bool:
        deadline = cache.get(gid)
        return deadline is not None and self._clock() < deadline

    def _take_fresh(self, gid: str) -> bool:
        """Consume the "just created, no subscription yet" mark (valid for one use)."""
        with self._lock:
            deadline = self._fresh.pop(gid, None)
        return deadline is not None and self._clock() < deadline

    def forget(self, gid: str | None = None) -> None:
        """Drop what this instance remembers about a customer (all customers with None).

        Called on charges that were not paid and on webhooks that may change a customer's
        cards or subscriptions; an application that changes them behind the gateway's back
        (dashboard, its own SDK calls) within ``cache_ttl`` may call it too.
        """
        with self._lock:
            if gid is None:
                self._pm_known.clear()
                self._fresh.clear()
            else:
                self._pm_known.pop(gid, None)
                self._fresh.pop(gid, None)

    def attach_payment_method(self, gateway_customer_id: str, payment_method: str) -> str:
        """Attach a card (a token ``tok_...``/source, or a PaymentMethod ``pm_...``) as default.

        For applications that collect cards themselves (Stripe Elements): the gateway then
        knows the customer can pay, and the next ``has_payment_method`` needs no request.
        Returns the attached source or payment method id. A declined card raises
        ``PaymentFailed`` and leaves nothing attached.
        """
        gid = gateway_customer_id
        if payment_method.startswith("pm_"):
            self._call(
                "payment method attach",
                self.client.v1.payment_methods.attach,
                payment_method,
                {"customer": gid},
            )
            self._call(
                "default payment method update",
                self.client.v1.customers.update,
                gid,
                {"invoice_settings": {"default_payment_method": payment_method}},
                {"idempotency_key": f"autumn-default-pm:{gid}:{payment_method}"},
            )
            attached = payment_method
        else:
            source = self._call(
                "card attach",
                self.client.v1.customers.payment_sources.create,
                gid,
                {"source": payment_method},
                {"idempotency_key": f"autumn-source:{gid}:{payment_method}"[:_MAX_KEY]},
            )
            attached = str(source.id)
        self._remember(self._pm_known, gid)
        return attached

    def has_payment_method(self, gateway_customer_id: str) -> bool:
        """A default card/source, a default payment method, or any attached card counts.

        An attached card that is not the default is made the customer's default invoice payment
        method here: subscriptions and invoices only charge the default, so without this the
        answer "yes" would be followed by a charge Stripe refuses.

        A "yes" (or a card attached through ``attach_payment_method``) is remembered for
        ``cache_ttl`` seconds, so a paid attach right after needs no customer request. A stale
        "yes" costs no money: the charge then ends ``failed``/``requires_action`` and the memory
        is dropped (also by webhooks that can remove a card, see ``_observe``).
        """
        if self._knows(self._pm_known, gateway_customer_id):
            return True
        customer = _as_dict(
            self._call("customer lookup", self.client.v1.customers.retrieve, gateway_customer_id)
        )
        if customer.get("deleted"):
            return False
        settings = customer.get("invoice_settings") or {}
        if customer.get("default_source") or settings.get("default_payment_method"):
            self._remember(self._pm_known, gateway_customer_id)
            return True
        methods = self._call(
            "payment method lookup",
            self.client.v1.payment_methods.list,
            {"customer": gateway_customer_id, "type": "card", "limit": 1},
        )
        if not methods.data:
            return False
        pm = str(methods.data[0].id)
        self._call(
            "default payment method update",
            self.client.v1.customers.update,
            gateway_customer_id,
            {"invoice_settings": {"default_payment_method": pm}},
            {"idempotency_key": f"autumn-default-pm:{gateway_customer_id}:{pm}"},
        )
        self._remember(self._pm_known, gateway_customer_id)
        return True

    # -- catalog sync --------------------------------------------------------------------------
    def _items(self, recurring: Iterable[RecurringPrice], currency: str) -> list[_Item]:
        items: list[_Item] = []
        for price in recurring:
            if price.quantity <= 0 or price.unit_amount <= 0:
                continue  # nothing to bill; Stripe items need a positive quantity
            try:
                interval, factor = _INTERVALS[price.interval]
            except KeyError:
                raise InvalidRequest(
                    f"interval {price.interval!r} of {price.product_id!r} has no Stripe equivalent"
                ) from None
            unit = minor_units(price.unit_amount, currency)
            exact = price.unit_amount * (1 if currency in ZERO_DECIMAL else 100)
            if price.quantity == price.quantity.to_integral_value() and exact == unit:
                amount, quantity = unit, int(price.quantity)
            else:  # fractional units or sub-cent prices: bill the line total as one unit
                amount, quantity = minor_units(price.unit_amount * price.quantity, currency), 1
            count = price.interval_count * factor
            plan_id = (
                "autumn_plan_"
                + hashlib.sha256(
                    "|".join(
                        [
                            price.product_id,
                            price.feature_id or "",
                            str(amount),
                            currency,
                            interval,
                            str(count),
                        ]
                    ).encode()
                ).hexdigest()[:24]
            )
            items.append(
                _Item(
                    plan_id,
                    price.product_id,
                    price.feature_id,
                    amount,
                    quantity,
                    interval,
                    count,
                    currency,
                )
            )
        return items

    def _ensure_product(self, product_id: str) -> str:
        stripe_id = "autumn_" + _slug(product_id)
        if stripe_id in self._known_products:
            return stripe_id
        found = self._get_or_none("product lookup", self.client.v1.products.retrieve, stripe_id)
        if found is None:
            try:
                self.client.v1.products.create(
                    {
                        "id": stripe_id,
                        "name": product_id,
                        "metadata": {"autumn_product_id": product_id},
                    },
                    {"idempotency_key": f"autumn-product:{stripe_id}"},
                )
            except stripe.StripeError as exc:
                # Another process created it between our lookup and create: that is fine.
                if (
                    self._get_or_none("product lookup", self.client.v1.products.retrieve, stripe_id)
                    is None
                ):
                    raise translate(exc, "product creation") from exc
        with self._lock:
            self._known_products.add(stripe_id)
        return stripe_id

    def ensure_plan(self, item: _Item) -> str:
        """Find-or-create the Stripe plan for one fixed price (deterministic id, never twice)."""
        if item.plan_id in self._known_plans:
            return item.plan_id
        found = self._get_or_none("plan lookup", self.client.v1.plans.retrieve, item.plan_id)
        if found is None:
            product = self._ensure_product(item.product_id)
            params: dict[str, Any] = {
                "id": item.plan_id,
                "product": product,
                "amount": item.amount,
                "currency": item.currency,
                "interval": item.interval,
                "interval_count": item.interval_count,
                "nickname": f"{item.product_id}:{item.feature_id or 'base'}",
                "metadata": {
                    "autumn_product_id": item.product_id,
                    "autumn_feature_id": item.feature_id or "",
                },
            }
            try:
                self.client.v1.plans.create(
                    cast(Any, params), {"idempotency_key": f"autumn-plan:{item.plan_id}"}
                )
            except stripe.StripeError as exc:
                if (
                    self._get_or_none("plan lookup", self.client.v1.plans.retrieve, item.plan_id)
                    is None
                ):
                    raise translate(exc, "plan creation") from exc
        with self._lock:
            self._known_plans.add(item.plan_id)
        return item.plan_id

    # -- subscriptions -------------------------------------------------------------------------
    def subscriptions(self, gateway_customer_id: str) -> dict[str, dict[str, Any]]:
        """The customer's live library-managed subscriptions, by billing cycle."""
        listed = self._call(
            "subscription lookup",
            self.client.v1.subscriptions.list,
            {"customer": gateway_customer_id, "limit": 100},
        )
        found: dict[str, dict[str, Any]] = {}
        for sub in listed.data:
            data = _as_dict(sub)
            cycle = (data.get("metadata") or {}).get("autumn_cycle")
            if cycle and data.get("status") in _LIVE_SUB:
                found.setdefault(cycle, data)
        return found

    @staticmethod
    def _sub_items(sub: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list((sub.get("items") or {}).get("data") or [])

    @staticmethod
    def _plan_of(item: Mapping[str, Any]) -> dict[str, Any]:
        plan = item.get("plan") or item.get("price") or {}
        return plan if isinstance(plan, dict) else {"id": plan}

    def _update_ops(self, sub: Mapping[str, Any], wanted: Sequence[_Item]) -> list[dict[str, Any]]:
        """Item changes turning ``sub`` into ``wanted``; a replaced plan reuses the old item."""
        current = {self._plan_of(it).get("id"): it for it in self._sub_items(sub)}
        wanted_ids = {w.plan_id for w in wanted}
        ops: list[dict[str, Any]] = []
        added: list[_Item] = []
        for w in wanted:
            existing = current.get(w.plan_id)
            if existing is None:
                added.append(w)
            elif int(existing.get("quantity") or 1) != w.quantity:
                ops.append({"id": existing["id"], "plan": w.plan_id, "quantity": w.quantity})
        removed = [it for pid, it in current.items() if pid not in wanted_ids]
        for old, new in zip(removed, added, strict=False):
            ops.append(
                {
                    "id": old["id"],
                    "plan": new.plan_id,
                    "quantity": new.quantity,
                    "metadata": self._item_metadata(new),
                }
            )
        for old in removed[len(added) :]:
            ops.append({"id": old["id"], "deleted": True})
        for new in added[len(removed) :]:
            ops.append(
                {
                    "plan": new.plan_id,
                    "quantity": new.quantity,
                    "metadata": self._item_metadata(new),
                }
            )
        return ops

    @staticmethod
    def _item_metadata(item: _Item) -> dict[str, str]:
        return {"autumn_product_id": item.product_id, "autumn_feature_id": item.feature_id or ""}

    def _create_subscription(
        self,
        customer: str,
        cycle: str,
        items: Sequence[_Item],
        key: str,
        *,
        trial_end: int | None,
        first: bool = False,
    ) -> dict[str, Any]:
        """Create the cycle's subscription (its first invoice is paid now or it fails now).

        ``first``: no live subscription of this cycle was known (listed, or the customer was
        just created). The request then carries the per-customer key
        ``autumn-first-subscription:<customer>:<cycle>`` instead of the operation's, so two
        operations that both believe the customer has none (one skipped the list because it
        had just created the customer, the other listed before the first subscription existed)
        cannot both create one: Stripe refuses the second use of that key with other
        parameters, and ``_FirstTaken`` makes the charge re-plan from a fresh list. The same
        operation retried sends the same parameters and gets Stripe's first answer back.
        """
        params: dict[str, Any] = {
            "customer": customer,
            "items": [
                {"plan": i.plan_id, "quantity": i.quantity, "metadata": self._item_metadata(i)}
                for i in items
            ],
            # autumn_created_by: a retry of the same operation recognises its own subscription
            # (and that the first invoice already collected the request) instead of charging.
            "metadata": {"autumn_cycle": cycle, "autumn_created_by": key[:500]},
            # Charge now or fail now: never leave an unpaid subscription behind a charge call.
            "payment_behavior": "error_if_incomplete",
        }
        if trial_end is not None:
            params["trial_end"] = trial_end
        options: stripe.RequestOptions = (
            {"idempotency_key": f"autumn-first-subscription:{customer}:{cycle}"[:_MAX_KEY]}
            if first
            else self._key(key, f"subscription:{cycle}")
        )
        try:
            created = self.client.v1.subscriptions.create(cast(Any, params), options)
        except stripe.IdempotencyError as exc:
            if first:
                raise _FirstTaken(cycle) from exc
            raise translate(exc, "subscription creation") from exc
        except stripe.StripeError as exc:
            raise translate(exc, "subscription creation") from exc
        return _as_dict(created)

    def _update_subscription(
        self, sub: Mapping[str, Any], ops: list[dict[str, Any]], key: str
    ) -> None:
        # autumn_updated_by: find_charge can tell that this operation reached Stripe.
        params: dict[str, Any] = {"items": ops, "metadata": {"autumn_updated_by": key[:500]}}
        if self.send_proration_behavior:
            params["proration_behavior"] = "none"  # the library's lines carry the prorations
        self._call(
            "subscription update",
            self.client.v1.subscriptions.update,
            sub["id"],
            cast(Any, params),
            self._key(key, f"subscription-update:{sub['id']}"),
        )
        if not self.send_proration_behavior:
            self._drop_provider_prorations(str(sub["customer"]), str(sub["id"]))

    def _drop_provider_prorations(self, customer: str, subscription_id: str) -> None:
        """Delete proration items the server made on its own (it ignored "none")."""
        for item in self._pending_items(customer):
            if (
                item.get("proration")
                and item.get("subscription") == subscription_id
                and not (item.get("metadata") or {}).get("autumn_invoice_id")
            ):
                self._call(
                    "proration cleanup", self.client.v1.invoice_items.delete, str(item["id"])
                )

    def _cancel(self, sub: Mapping[str, Any], key: str) -> None:
        self._call(
            "subscription cancel",
            self.client.v1.subscriptions.cancel,
            str(sub["id"]),
            None,
            self._key(key, f"cancel:{sub['id']}"),
        )

    def cancel_subscription(self, gateway_customer_id: str, *, idempotency_key: str) -> None:
        """Cancel every library-managed subscription of the customer, without Stripe prorations."""
        self._take_fresh(gateway_customer_id)
        for sub in self.subscriptions(gateway_customer_id).values():
            self._cancel(sub, idempotency_key)

    # -- invoices ------------------------------------------------------------------------------
    def _pending_items(self, customer: str) -> list[dict[str, Any]]:
        listed = self._call(
            "invoice item lookup",
            self.client.v1.invoice_items.list,
            {"customer": customer, "limit": 100},
        )
        # Filtered here rather than with ``pending=true``: localstripe rejects that parameter.
        return [d for d in (_as_dict(i) for i in listed.data) if not d.get("invoice")]

    def _add_items(self, request: ChargeRequest, lines: Sequence[_Line], currency: str) -> None:
        for ln in lines:
            self._call(
                "invoice item creation",
                self.client.v1.invoice_items.create,
                {
                    "customer": request.gateway_customer_id,
                    "amount": ln.amount,
                    "currency": currency,
                    "description": ln.line.description,
                    "metadata": {
                        "autumn_invoice_id": request.invoice_id,
                        "autumn_charge_key": request.idempotency_key[:500],
                        "autumn_line": str(ln.index),
                        "autumn_product_id": ln.line.product_id or "",
                        "autumn_feature_id": ln.line.feature_id or "",
                    },
                },
                self._key(request.idempotency_key, f"item:{ln.index}"),
            )

    def _invoice_and_pay(self, request: ChargeRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "customer": request.gateway_customer_id,
            "pending_invoice_items_behavior": "include",
            "metadata": {
                **request.metadata,
                "autumn_invoice_id": request.invoice_id,
                "autumn_charge_key": request.idempotency_key[:500],
            },
        }
        if request.description:
            params["description"] = request.description
        invoice = _as_dict(
            self._call(
                "invoice creation",
                self.client.v1.invoices.create,
                cast(Any, params),
                self._key(request.idempotency_key, "invoice"),
            )
        )
        if self.finalize_invoices:
            invoice = _as_dict(
                self._call(
                    "invoice finalization",
                    self.client.v1.invoices.finalize_invoice,
                    invoice["id"],
                    None,
                    self._key(request.idempotency_key, "finalize"),
                )
            )
        if invoice.get("status") == "paid":
            return invoice  # credits on the customer covered it: Stripe settled it on finalize
        try:
            try:
                paid = self.client.v1.invoices.pay(
                    invoice["id"], None, self._key(request.idempotency_key, "pay")
                )
            except stripe.InvalidRequestError as exc:
                # Stripe refuses to pay an invoice when the customer has no *default* payment
                # method. A card saved by a Checkout Session is attached but not the default:
                # has_payment_method promotes it, then the payment is tried once more. With no
                # card at all the invoice is left open for the customer (CO4). What this
                # instance remembered about the customer's card was wrong: ask Stripe.
                self.forget(request.gateway_customer_id)
                if not self.has_payment_method(request.gateway_customer_id):
                    raise _NoPaymentMethod(invoice) from exc
                paid = self.client.v1.invoices.pay(
                    invoice["id"], None, self._key(request.idempotency_key, "pay-default-pm")
                )
        except stripe.StripeError as exc:
            error = translate(exc, "invoice payment")
            if isinstance(error, PaymentFailed):
                raise _Declined(error.message, str(invoice["id"])) from exc
            raise error from exc
        return _as_dict(paid)

    def _default_payment_method(self, customer: str) -> str | None:
        data = _as_dict(self._call("customer lookup", self.client.v1.customers.retrieve, customer))
        settings = data.get("invoice_settings") or {}
        found = settings.get("default_payment_method") or data.get("default_source")
        if not found:
            methods = self._call(
                "payment method lookup",
                self.client.v1.payment_methods.list,
                {"customer": customer, "type": "card", "limit": 1},
            )
            found = methods.data[0].id if methods.data else None
        return self._id(found)

    def _pay_intent(self, request: ChargeRequest, amount: int, currency: str) -> dict[str, Any]:
        """Collect ``amount`` with one confirmed off-session PaymentIntent."""
        method = self._default_payment_method(request.gateway_customer_id)
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "customer": request.gateway_customer_id,
            "metadata": {
                "autumn_invoice_id": request.invoice_id,
                "autumn_charge_key": request.idempotency_key[:500],
                "description": request.description
                or "; ".join(ln.description for ln in request.lines)[:450],
            },
        }
        if method is not None:
            params.update(payment_method=method, confirm=True, off_session=True)
        return _as_dict(
            self._call(
                "payment",
                self.client.v1.payment_intents.create,
                cast(Any, params),
                self._key(request.idempotency_key, "payment"),
            )
        )

    @staticmethod
    def _intent_failure(intent: Mapping[str, Any]) -> str:
        error = intent.get("last_payment_error") or {}
        if error.get("message"):
            return f"card declined: {error['message']}"
        return f"Stripe payment {intent.get('id')} ended {intent.get('status')}"

    # -- charge --------------------------------------------------------------------------------
    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        """Collect ``request.total`` now and keep the subscription(s) in step with ``recurring``.

        Order matters for "nothing changes when the charge did not happen": money is collected
        first (new subscription and/or invoice), and existing subscriptions are changed only
        after it succeeded.

        The customer's subscriptions are listed first, except for a customer this instance has
        just created (it has none); a first subscription is created under a per-customer key
        (see ``_create_subscription``) so that shortcut can never make a second one.

        With ``recurring``, the outcome's ``subscriptions`` maps each of its products to the
        subscription of its cycle (see ``_billed_by``). ``ChargeRequest`` carries no stored
        subscription ids back, so they cannot replace the list (a field is proposed in the
        README's known limits).
        """
        customer = request.gateway_customer_id
        fresh = self._take_fresh(customer)
        try:
            try:
                outcome = self._charge(request, known={} if fresh else None, first_keys=True)
            except _FirstTaken:
                outcome = self._charge(request, known=None, first_keys=False)
        except BaseException:
            self.forget(customer)
            raise
        if outcome.status != "paid":
            self.forget(customer)
        return outcome

    def _charge(
        self,
        request: ChargeRequest,
        *,
        known: dict[str, dict[str, Any]] | None,
        first_keys: bool,
    ) -> ChargeOutcome:
        """``charge`` given the live subscriptions when already ``known`` (else listed)."""
        currency = (request.currency or self.currency).lower()
        customer = request.gateway_customer_id
        key = request.idempotency_key
        lines = [
            _Line(i, line, minor_units(line.amount, currency))
            for i, line in enumerate(request.lines)
        ]
        lines = [ln for ln in lines if ln.amount != 0]
        if known is not None:
            existing = dict(known)
        elif request.recurring is not None or lines:
            existing = self.subscriptions(customer)
        else:
            existing = {}

        wanted: dict[str, list[_Item]] = {}
        if request.recurring is not None:
            for item in self._items(request.recurring, currency):
                self.ensure_plan(item)
                wanted.setdefault(item.cycle, []).append(item)
            to_create = {c: its for c, its in wanted.items() if c not in existing}
        else:
            to_create = {}
            if request.reason in _SELF_RENEWING:
                lines = self._drop_renewed(lines, existing)

        # A retry of an operation whose subscription was already created (the process died
        # after Stripe answered): that subscription's first invoice collected the whole request.
        replayed = [
            sub
            for cycle, sub in existing.items()
            if (sub.get("metadata") or {}).get("autumn_created_by") == key[:500] and cycle in wanted
        ]
        if replayed:
            to_create = {}
            lines = []

        # New subscriptions whose first invoice collects exactly what the lines ask for them.
        sweeping: dict[str, list[_Item]] = {}
        trialing: dict[str, list[_Item]] = {}
        for cycle, items in to_create.items():
            covered = self._cover(lines, items)
            if covered is None:
                trialing[cycle] = items
            else:
                sweeping[cycle] = items
                lines = covered

        rest = sum(ln.amount for ln in lines)
        by_intent = self.one_off == "payment_intent" and not sweeping and rest > 0
        try:
            if not by_intent:
                self._add_items(request, lines, currency)
            invoice_id: str | None = (
                self._id(replayed[0].get("latest_invoice")) if replayed else None
            )
            for cycle, items in sweeping.items():
                sub = self._create_subscription(
                    customer, cycle, items, key, trial_end=None, first=first_keys
                )
                existing[cycle] = sub
                if sub.get("status") == "incomplete":
                    self._undo_failed(request, sub=sub, invoice_id=sub.get("latest_invoice"))
                    return ChargeOutcome(status="failed", message=self._failure_message(sub))
                invoice_id = invoice_id or self._id(sub.get("latest_invoice"))
            if by_intent:
                intent = self._pay_intent(request, rest, currency)
                invoice_id = str(intent["id"])
                if intent.get("status") == "requires_payment_method" and not intent.get(
                    "last_payment_error"
                ):
                    self._sync_existing(request, existing, wanted, to_create, key)
                    return ChargeOutcome(
                        status="requires_action",
                        gateway_invoice_id=invoice_id,
                        message="no payment method on file; the payment is left open",
                        subscriptions=self._billed_by(existing, wanted),
                    )
                if intent.get("status") != "succeeded":
                    return ChargeOutcome(
                        status="failed",
                        gateway_invoice_id=invoice_id,
                        message=self._intent_failure(intent),
                    )
            elif not sweeping and rest > 0:
                invoice = self._invoice_and_pay(request)
                invoice_id = str(invoice["id"])
                if invoice.get("status") != "paid":
                    return self._unpaid(request, invoice)
        except _NoPaymentMethod as exc:
            self._sync_existing(request, existing, wanted, to_create, key)
            return ChargeOutcome(
                status="requires_action",
                gateway_invoice_id=str(exc.invoice["id"]),
                checkout_url=exc.invoice.get("hosted_invoice_url"),
                message="no payment method on file; the invoice is open for the customer to pay",
                subscriptions=self._billed_by(existing, wanted),
            )
        except _Declined as exc:
            self._undo_failed(request, sub=None, invoice_id=exc.invoice_id)
            return ChargeOutcome(
                status="failed", gateway_invoice_id=exc.invoice_id, message=exc.message
            )
        except PaymentFailed as exc:
            self._undo_failed(request, sub=None, invoice_id=None)
            return ChargeOutcome(status="failed", message=exc.message)

        # Paid (or nothing to collect now): bring the rest of the subscriptions in step.
        for cycle, items in trialing.items():
            trial_end = self._period_end(request, items[0])
            existing[cycle] = self._create_subscription(
                customer, cycle, items, key, trial_end=trial_end, first=first_keys
            )
        self._sync_existing(request, existing, wanted, to_create, key)
        return ChargeOutcome(
            status="paid",
            gateway_invoice_id=invoice_id,
            subscriptions=self._billed_by(existing, wanted),
        )

    @staticmethod
    def _billed_by(
        subs: Mapping[str, Mapping[str, Any]], wanted: Mapping[str, Sequence[_Item]]
    ) -> dict[str, str]:
        """``ChargeOutcome.subscriptions``: each product of ``recurring`` -> the subscription of
        its cycle that now holds its items (created, updated, or already in step).

        Empty for a charge without ``recurring`` (nothing was created or changed). A cycle whose
        subscription was not created (a charge left ``requires_action`` before a trialing
        subscription was made) names nothing; the engine then keeps what it knew.
        """
        out: dict[str, str] = {}
        for cycle, items in wanted.items():
            sub_id = (subs.get(cycle) or {}).get("id")
            if not sub_id:
                continue
            for item in items:
                out.setdefault(item.product_id, str(sub_id))
        return out

    def _sync_existing(
        self,
        request: ChargeRequest,
        existing: Mapping[str, Mapping[str, Any]],
        wanted: Mapping[str, Sequence[_Item]],
        created: Mapping[str, Any],
        key: str,
    ) -> None:
        """Update or cancel the subscriptions that existed before this charge."""
        if request.recurring is None:
            return
        for cycle, sub in existing.items():
            if cycle in created:
                continue
            if not wanted.get(cycle):
                self._cancel(sub, key)
                continue
            ops = self._update_ops(sub, wanted[cycle])
            if ops:
                self._update_subscription(sub, ops, key)

    @staticmethod
    def _id(value: Any) -> str | None:
        if isinstance(value, dict):
            return str(value.get("id")) if value.get("id") else None
        return str(value) if value else None

    @staticmethod
    def _cover(lines: list[_Line], items: Sequence[_Item]) -> list[_Line] | None:
        """Lines left once each item's full price is matched by a line, or None if one is not."""
        left = list(lines)
        for item in items:
            match = next(
                (
                    ln
                    for ln in left
                    if ln.line.product_id == item.product_id
                    and ln.line.feature_id == item.feature_id
                    and ln.amount == item.full_amount
                ),
                None,
            )
            if match is None:
                return None
            left.remove(match)
        return left

    def _drop_renewed(
        self, lines: list[_Line], subs: Mapping[str, Mapping[str, Any]]
    ) -> list[_Line]:
        """Drop renewal lines that a live subscription item bills by itself."""
        left = list(lines)
        for sub in subs.values():
            for item in self._sub_items(sub):
                plan = self._plan_of(item)
                meta = plan.get("metadata") or {}
                full = int(plan.get("amount") or 0) * int(item.get("quantity") or 1)
                match = next(
                    (
                        ln
                        for ln in left
                        if ln.line.product_id == meta.get("autumn_product_id")
                        and (ln.line.feature_id or "") == meta.get("autumn_feature_id", "")
                        and ln.amount == full
                    ),
                    None,
                )
                if match is not None:
                    left.remove(match)
        return left

    def _period_end(self, request: ChargeRequest, item: _Item) -> int:
        """When Stripe should first bill a subscription the library did not charge now.

        The engine says so with ``request.period_end`` (older engines: ``metadata["period_end"]``,
        unix seconds); otherwise the period is taken to start now.
        """
        if request.period_end is not None:
            return int(request.period_end.timestamp())
        raw = request.metadata.get("period_end")  # engines from before ChargeRequest.period_end
        if raw:
            return int(float(raw))
        days = {"day": 1, "week": 7, "month": 30, "year": 365}[item.interval]
        return int(self._clock()) + days * item.interval_count * 86400

    def _failure_message(self, sub: Mapping[str, Any]) -> str:
        invoice_id = self._id(sub.get("latest_invoice"))
        if invoice_id:
            invoice = self._get_or_none(
                "invoice lookup", self.client.v1.invoices.retrieve, invoice_id
            )
            if invoice is not None:
                return self._invoice_failure(invoice)
        return "Stripe could not collect the subscription's first payment"

    def _invoice_failure(self, invoice: Mapping[str, Any]) -> str:
        pi_id = self._id(invoice.get("payment_intent"))
        if pi_id:
            pi = self._get_or_none("payment lookup", self.client.v1.payment_intents.retrieve, pi_id)
            error = (pi or {}).get("last_payment_error") or {}
            if error.get("message"):
                return f"card declined: {error['message']}"
            charge = (pi or {}).get("latest_charge")
            if isinstance(charge, dict) and charge.get("failure_message"):
                return f"card declined: {charge['failure_message']}"
        return f"Stripe invoice {invoice.get('id')} was not paid (status {invoice.get('status')})"

    def _unpaid(self, request: ChargeRequest, invoice: Mapping[str, Any]) -> ChargeOutcome:
        """The pay call returned without paying (a decline some servers report this way)."""
        message = self._invoice_failure(invoice)
        self._undo_failed(request, sub=None, invoice_id=str(invoice["id"]))
        return ChargeOutcome(
            status="failed", gateway_invoice_id=str(invoice["id"]), message=message
        )

    def _undo_failed(
        self, request: ChargeRequest, *, sub: Mapping[str, Any] | None, invoice_id: Any
    ) -> None:
        """Remove what a declined charge left at Stripe so it can never be collected later."""
        key = request.idempotency_key
        if sub is not None:
            self._cancel(sub, key)
        inv = self._id(invoice_id)
        if inv is None:
            # No invoice holds the request's items (Stripe refused the subscription outright):
            # delete them, or they would ride on the customer's next invoice.
            for pending in self._pending_items(request.gateway_customer_id):
                if (pending.get("metadata") or {}).get("autumn_invoice_id") == request.invoice_id:
                    self._call(
                        "invoice item cleanup",
                        self.client.v1.invoice_items.delete,
                        str(pending["id"]),
                    )
            return
        invoice = self._get_or_none("invoice lookup", self.client.v1.invoices.retrieve, inv)
        if invoice is not None and invoice.get("status") in ("draft", "open"):
            self._call(
                "invoice void",
                self.client.v1.invoices.void_invoice,
                inv,
                None,
                self._key(key, "void"),
            )

    # -- recovery: what became of a charge, without charging -----------------------------------
    def find_charge(self, request: ChargeRequest) -> ChargeOutcome | None:
        """What the charge sent with ``request.idempotency_key`` left at Stripe, or None.

        ``autumn_core.ports.ChargeLookup``: ``recover()`` asks this instead of charging again,
        so an operation whose process died before Stripe received it is rolled back rather
        than charged at recovery. Every Stripe object a charge makes or changes carries the key
        (subscription ``metadata.autumn_created_by`` / ``autumn_updated_by``, invoice, invoice
        item and PaymentIntent ``metadata.autumn_charge_key``), and lists by customer are
        strongly consistent (unlike Stripe's search), so the answer is read back from them:

        - a subscription it created: active/trialing -> paid (its first invoice);
          incomplete -> canceled here, failed;
        - its invoice: paid -> paid; open -> requires_action (the customer can pay the hosted
          invoice); draft (died before finalize/pay) -> deleted, None; void -> failed;
        - its PaymentIntent (``one_off="payment_intent"``): succeeded -> paid; not confirmed
          for lack of a card -> requires_action; declined -> failed;
        - only pending invoice items: a credit (total <= 0) -> paid; a charge that died before
          its invoice -> the items are deleted (they would ride on the next invoice), None.

        When the answer is paid or requires_action, the steps the charge takes after the money
        (keeping the other subscriptions in step with ``recurring``) are completed, since the
        process that died may not have reached them; they move no money. The answer then names
        the subscription of each product (``subscriptions``), as the charge itself would have. When nothing of the
        charge reached Stripe and it asks for no money (total <= 0: a downgrade or a cancel),
        it is simply made now, which is what the engine will record. A failed or rolled-back
        charge leaves nothing payable: open invoices voided, drafts deleted, items deleted.

        Must not run while the charge itself is still in flight in another process (it would
        undo that charge's first steps): ``recover()`` is for records whose process died.
        """
        customer = request.gateway_customer_id
        key = request.idempotency_key[:500]
        self.forget(customer)
        subs = self._call(
            "subscription lookup",
            self.client.v1.subscriptions.list,
            {"customer": customer, "status": "all", "limit": 100},
        )
        updated = False
        for sub in subs.data:
            data = _as_dict(sub)
            meta = data.get("metadata") or {}
            if meta.get("autumn_updated_by") == key:
                updated = True
            if meta.get("autumn_created_by") != key:
                continue
            status = data.get("status")
            latest = self._id(data.get("latest_invoice"))
            if status in ("incomplete", "incomplete_expired", "canceled"):
                live = status == "incomplete"
                message = self._failure_message(data) if live else "the subscription was canceled"
                self._undo_failed(request, sub=data if live else None, invoice_id=latest)
                return ChargeOutcome(status="failed", gateway_invoice_id=latest, message=message)
            return ChargeOutcome(
                status="paid", gateway_invoice_id=latest, subscriptions=self._finish(request)
            )

        listed = self._call(
            "invoice lookup",
            self.client.v1.invoices.list,
            {"customer": customer, "limit": 100},
        )
        for inv in listed.data:
            data = _as_dict(inv)
            if (data.get("metadata") or {}).get("autumn_charge_key") != key:
                continue
            status, inv_id = data.get("status"), str(data["id"])
            if status == "paid":
                return ChargeOutcome(
                    status="paid", gateway_invoice_id=inv_id, subscriptions=self._finish(request)
                )
            if status == "open":
                return ChargeOutcome(
                    status="requires_action",
                    gateway_invoice_id=inv_id,
                    checkout_url=data.get("hosted_invoice_url"),
                    message="the invoice is open for the customer to pay",
                    subscriptions=self._finish(request),
                )
            if status == "draft":
                self._call("invoice cleanup", self.client.v1.invoices.delete, inv_id, None)
                self._delete_items(request)
                return None
            self._delete_items(request)
            return ChargeOutcome(
                status="failed",
                gateway_invoice_id=inv_id,
                message=f"Stripe invoice {inv_id} ended {status}",
            )

        if self.one_off == "payment_intent":
            # Listed without ``customer``: localstripe refuses that filter on this endpoint.
            intents = self._call(
                "payment lookup", self.client.v1.payment_intents.list, {"limit": 100}
            )
            for pi in intents.data:
                data = _as_dict(pi)
                if data.get("customer") != customer:
                    continue
                if (data.get("metadata") or {}).get("autumn_charge_key") != key:
                    continue
                pi_id, status = str(data["id"]), data.get("status")
                if status == "succeeded":
                    return ChargeOutcome(
                        status="paid", gateway_invoice_id=pi_id, subscriptions=self._finish(request)
                    )
                if data.get("last_payment_error") or status == "canceled":
                    return ChargeOutcome(
                        status="failed",
                        gateway_invoice_id=pi_id,
                        message=self._intent_failure(data),
                    )
                return ChargeOutcome(
                    status="requires_action",
                    gateway_invoice_id=pi_id,
                    message="no payment method on file; the payment is left open",
                    subscriptions=self._finish(request),
                )

        items = [
            item
            for item in self._pending_items(customer)
            if (item.get("metadata") or {}).get("autumn_charge_key") == key
        ]
        currency = (request.currency or self.currency).lower()
        asks_money = request.total > 0 and any(
            minor_units(ln.amount, currency) > 0 for ln in request.lines
        )
        if items and asks_money:
            self._delete_items(request)  # died before its invoice: nothing was collected
            return None
        if items or updated:
            # A credit's items, or subscriptions changed (only ever after the money): done.
            return ChargeOutcome(status="paid", subscriptions=self._finish(request))
        if not asks_money:
            # Nothing reached Stripe and nothing is to be collected (a downgrade, a cancel):
            # making it now moves no money and matches what the engine will record.
            return self.charge(request)
        return None

    def _finish(self, request: ChargeRequest) -> Mapping[str, str]:
        """The moneyless tail of a charge found paid: bring subscriptions in step.

        Returns which subscription now bills each product (``ChargeOutcome.subscriptions``).
        """
        if request.recurring is None:
            return {}
        tail = self._charge(
            attrs.evolve(request, lines=(), total=Decimal(0)), known=None, first_keys=False
        )
        return tail.subscriptions

    def _delete_items(self, request: ChargeRequest) -> None:
        """Delete the charge's pending invoice items (else the next invoice would bill them)."""
        key = request.idempotency_key[:500]
        for item in self._pending_items(request.gateway_customer_id):
            if (item.get("metadata") or {}).get("autumn_charge_key") == key:
                self._call(
                    "invoice item cleanup", self.client.v1.invoice_items.delete, str(item["id"])
                )

    # -- hosted pages --------------------------------------------------------------------------
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
            _Line(i, ln, minor_units(ln.amount, currency)) for i, ln in enumerate(request.lines)
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

    # -- webhooks ------------------------------------------------------------------------------
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
