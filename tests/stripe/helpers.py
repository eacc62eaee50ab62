"""Small builders shared by the Stripe gateway tests."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import stripe

from autumn_core import Catalog, Feature, Item, Price, Product
from autumn_core.ports import ChargeLine, ChargeRequest, RecurringPrice
from autumn_stripe import StripeGateway

GOOD_CARD = "4242424242424242"
DECLINED_ON_ATTACH = "4000000000000002"  # Stripe (and localstripe) refuse to attach it
DECLINED_ON_CHARGE = "4000000000000341"  # attaches, then every charge is declined


def card_token(client: stripe.StripeClient, number: str = GOOD_CARD) -> str:
    card: Any = {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    token = client.v1.tokens.create({"card": card})
    return str(token.id)


def add_card(client: stripe.StripeClient, customer: str, number: str = GOOD_CARD) -> str:
    """Give the customer a card source (what localstripe bills), as LOCALSTRIPE.md says."""
    source = client.v1.customers.payment_sources.create(
        customer, {"source": card_token(client, number)}
    )
    return str(source.id)


def base(amount: str = "20", product: str = "pro", interval: str = "month") -> RecurringPrice:
    return RecurringPrice(
        product_id=product,
        feature_id=None,
        unit_amount=Decimal(amount),
        quantity=Decimal(1),
        interval=interval,
        interval_count=1,
    )


def seats(qty: int, unit: str = "10", product: str = "team") -> RecurringPrice:
    return RecurringPrice(
        product_id=product,
        feature_id="users",
        unit_amount=Decimal(unit),
        quantity=Decimal(qty),
        interval="month",
        interval_count=1,
    )


def line(
    amount: str, product: str | None = "pro", feature: str | None = None, desc: str = ""
) -> ChargeLine:
    return ChargeLine(
        description=desc or f"{product} {feature or 'base'}",
        amount=Decimal(amount),
        product_id=product,
        feature_id=feature,
    )


def request(
    customer: str,
    lines: list[ChargeLine],
    *,
    key: str,
    recurring: list[RecurringPrice] | None = None,
    invoice_id: str | None = None,
    metadata: dict[str, str] | None = None,
    reason: str = "attach",
    period_end: datetime | None = None,
) -> ChargeRequest:
    return ChargeRequest(
        gateway_customer_id=customer,
        invoice_id=invoice_id or f"inv_{key}",
        lines=tuple(lines),
        total=sum((ln.amount for ln in lines), Decimal(0)),
        currency="usd",
        idempotency_key=key,
        recurring=None if recurring is None else tuple(recurring),
        metadata=metadata or {},
        reason=reason,
        period_end=period_end,
    )


def as_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if isinstance(obj, stripe.StripeObject) else dict(obj)


def all_subscriptions(client: stripe.StripeClient, customer: str) -> list[dict[str, Any]]:
    listed = client.v1.subscriptions.list({"customer": customer, "status": "all"})
    return [as_dict(s) for s in listed.data]


def live_subscriptions(client: stripe.StripeClient, customer: str) -> list[dict[str, Any]]:
    return [s for s in all_subscriptions(client, customer) if s["status"] not in ("canceled",)]


def invoices(client: stripe.StripeClient, customer: str) -> list[dict[str, Any]]:
    return [as_dict(i) for i in client.v1.invoices.list({"customer": customer}).data]


def pending_items(client: stripe.StripeClient, customer: str) -> list[dict[str, Any]]:
    listed = client.v1.invoice_items.list({"customer": customer})
    return [d for d in (as_dict(i) for i in listed.data) if not d.get("invoice")]


def collected(client: stripe.StripeClient, gateway_id: str | None) -> tuple[str, int]:
    """(status, amount) of what a charge collected: an invoice, or a PaymentIntent."""
    assert gateway_id is not None
    if gateway_id.startswith("pi_"):
        pi = as_dict(client.v1.payment_intents.retrieve(gateway_id))
        return ("paid" if pi["status"] == "succeeded" else pi["status"]), pi["amount"]
    inv = as_dict(client.v1.invoices.retrieve(gateway_id))
    return inv["status"], inv["total"]


#: A yearly add-on: beside a monthly product it makes a second Stripe subscription.
YEARLY_ADDON = Product(
    "yearly-addon",
    add_on=True,
    price=Price(240, interval="year"),
    items=[Item.feature("messages", included=10)],
)


def catalog(*extra: Product) -> Catalog:
    msgs = "messages"
    return Catalog(
        features=[Feature.metered(msgs)],
        products=[
            Product("free", default=True, items=[Item.feature(msgs, included=100, reset="month")]),
            Product(
                "pro", price=Price(20), items=[Item.feature(msgs, included=500, reset="month")]
            ),
            Product(
                "premium", price=Price(50), items=[Item.feature(msgs, included=1000, reset="month")]
            ),
            Product(
                "pack", price=Price(15, interval="one_off"), items=[Item.feature(msgs, included=50)]
            ),
            *extra,
        ],
    )


class CardOnFile(StripeGateway):
    """The real gateway, whose new customers already entered a card (as after a checkout)."""

    def create_customer(self, **kwargs: Any) -> str:
        gid = super().create_customer(**kwargs)
        if not self.has_payment_method(gid):
            add_card(self.client, gid)
        return gid
