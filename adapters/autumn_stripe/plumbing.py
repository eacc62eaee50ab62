"""What every part of ``StripeGateway`` shares: its state, the SDK call wrapper, the
deterministic idempotency keys, and the records of plans and priced lines."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, TypeVar

import attrs
import stripe

from autumn_core.errors import InvalidRequest
from autumn_core.ports import ChargeLine
from autumn_stripe import webhooks
from autumn_stripe.errors import translate, translated

T = TypeVar("T")

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
INTERVALS: Mapping[str, tuple[str, int]] = {
    "day": ("day", 1),
    "week": ("week", 1),
    "month": ("month", 1),
    "quarter": ("month", 3),
    "semi_annual": ("month", 6),
    "year": ("year", 1),
}

LIVE_SUB = frozenset({"active", "trialing", "past_due", "unpaid", "incomplete", "paused"})
MAX_KEY = 255  # Stripe's idempotency key limit
#: ``ChargeRequest.reason`` s whose full-price lines a live subscription item bills by itself
#: (a renewal, a trial's conversion, a scheduled product starting). A seat, quantity, cancel or
#: attach charge is always collected now, even when a line happens to equal an item's price.
SELF_RENEWING = frozenset({"renewal", "conversion", "switch"})


def minor_units(amount: Decimal, currency: str) -> int:
    """Decimal major units -> Stripe's integer minor units (half-up to the cent)."""
    factor = 1 if currency.lower() in ZERO_DECIMAL else 100
    return int((amount * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def slug(value: str) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", value)[:40]
    return f"{clean}_{digest}"


@attrs.frozen
class PlanItem:
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
class PricedLine:
    index: int
    line: ChargeLine
    amount: int  # minor units


class NoPaymentMethod(Exception):
    """The customer has no payment method: the invoice (or payment) stays open for them."""

    def __init__(self, invoice: Mapping[str, Any]) -> None:
        super().__init__(f"invoice {invoice.get('id')} left open")
        self.invoice = invoice


class FirstTaken(Exception):
    """Another operation already created the customer's first subscription for this cycle.

    Raised when the per-customer "first subscription" idempotency key was used with other
    parameters (Stripe answers 400 ``idempotency_error``): the charge is re-planned from a
    fresh subscription list instead of creating a second subscription.
    """


class Declined(Exception):
    """A card decline on an invoice we created: carries the invoice to void."""

    def __init__(self, message: str, invoice_id: str) -> None:
        super().__init__(message)
        self.message = message
        self.invoice_id = invoice_id


def as_dict(obj: Any) -> dict[str, Any]:
    """SDK objects are not dicts in stripe>=15; work on plain data everywhere."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return dict(obj)


class StripeBase:
    """The state every part of ``StripeGateway`` works with (the SDK client, its settings and
    per-instance caches) and the SDK call wrapper. The switches are described on ``StripeGateway``.
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

    @staticmethod
    def _key(base: str, step: str) -> stripe.RequestOptions:
        """Request options carrying the deterministic idempotency key ``<base>:<step>``."""
        key = f"{base}:{step}"
        if len(key) > MAX_KEY:
            key = f"{hashlib.sha256(base.encode()).hexdigest()}:{step}"[:MAX_KEY]
        return {"idempotency_key": key}

    def _call(self, step: str, fn: Callable[..., T], *args: Any) -> T:
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
            return as_dict(fn(*args))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise translate(exc, step) from exc
        except stripe.StripeError as exc:
            raise translate(exc, step) from exc

    @staticmethod
    def _id(value: Any) -> str | None:
        if isinstance(value, dict):
            return str(value.get("id")) if value.get("id") else None
        return str(value) if value else None
