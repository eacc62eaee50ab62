"""``autumn demo``: an example catalog and a realistic month of billing, printed as tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from autumn_cli.tables import table
from autumn_core import (
    Autumn,
    ByEmail,
    Catalog,
    CustomerData,
    Feature,
    FreeTrial,
    Item,
    Price,
    Product,
)


def example_catalog() -> Catalog:
    return Catalog(
        features=[
            Feature.metered("messages", name="Messages", event_names=["chat"]),
            Feature.allocated("seats", name="Seats"),
            Feature.boolean("sso", name="SSO"),
        ],
        products=[
            Product(
                "free",
                name="Free",
                default=True,
                items=[Item.feature("messages", included=100, reset="month")],
            ),
            Product(
                "pro",
                name="Pro",
                price=Price(20, interval="month"),
                free_trial=FreeTrial(
                    14, duration="day", unique_fingerprint=True, card_required=False
                ),
                items=[
                    Item.feature("sso"),
                    Item.feature("messages", included=1000, reset="month"),
                    Item.priced("messages", price="0.01", billing="usage", max_purchase=5000),
                    Item.priced("seats", included=3, price=10, billing="usage", interval="month"),
                ],
            ),
            Product(
                "enterprise",
                name="Enterprise",
                price=Price(500, interval="month"),
                items=[
                    Item.feature("sso"),
                    Item.feature("messages", unlimited=True),
                    Item.feature("seats", included=50),
                ],
            ),
            Product(
                "top_up",
                name="Message pack",
                add_on=True,
                items=[
                    Item.priced(
                        "messages",
                        price=5,
                        billing_units=500,
                        billing="prepaid",
                        interval="one_off",
                    )
                ],
            ),
        ],
    )


DEMO_START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def run_demo(billing: Autumn, advance: Callable[..., object], say: Callable[[str], None]) -> None:
    """Play the scenario on ``billing``; ``advance(days=...)`` moves its clock."""
    say("== Sign-ups")
    billing.customers.create(
        "alice", name="Alice", email="alice@example.com", fingerprint="device-A"
    )
    advance(minutes=5)
    billing.customers.create("bob")  # no email: only the id is required
    advance(minutes=5)
    # dave is auto-created by his first tracked message
    billing.track("dave", "messages", value=3, customer_data=CustomerData(name="Dave"))
    advance(minutes=50)
    say("alice and bob sign up; dave is created by his first tracked message")

    say("\n== A pre-created enterprise customer, enabled before sign-in, claimed by email")
    advance(minutes=10)
    billing.customers.create(None, email="cfo@bigco.com", name="BigCo CFO")
    billing.attach(ByEmail("cfo@bigco.com"), "enterprise")
    advance(hours=2)
    carol = billing.customers.create("carol", email="CFO@bigco.com")
    say(f"carol signs in and already holds: {', '.join(p.id for p in carol.products)}")

    say("\n== Trials: one per device fingerprint")
    first = billing.attach("alice", "pro")
    first_status = first.product.status if first.product else "-"
    say(f"alice attaches pro: {first_status}, trial ends {first.trial_ends_at}")
    advance(hours=1)
    billing.customers.create("alice-2", email="alice+2@example.com", fingerprint="device-A")
    second = billing.attach("alice-2", "pro")
    status = second.product.status if second.product else "-"
    total = second.invoice.total if second.invoice else 0
    say(f"alice-2 on the same device attaches pro: {status}, no trial, charged ${total}")

    say("\n== Usage")
    for _ in range(3):
        billing.track("bob", "messages", value=30)
    billing.track("alice", event_name="chat", value=250)
    denied = billing.check("bob", "messages", required_balance=20)
    say(f"bob used 90 of 100 free messages; may he send 20 more? {denied.allowed}")

    say("\n== Upgrade")
    upgrade = billing.attach("bob", "pro", free_trial=None)
    paid = upgrade.invoice.total if upgrade.invoice else 0
    say(f"bob upgrades free -> pro: {upgrade.scenario}, invoice ${paid}")
    billing.track("bob", "messages", value=1250)
    say("bob sends 1250 messages on pro (1000 included, the rest billed at $0.01)")

    say("\n== A month later: renewals")
    advance(days=31)
    changed = billing.process_due()
    say(f"process_due applied due work to {changed} customers")

    say("")
    print_customers(billing, say)
    for cid in ("alice", "alice-2", "bob", "carol"):
        print_customer(billing, cid, say)


def print_customers(billing: Autumn, say: Callable[[str], None]) -> None:
    rows = [
        (c.id, c.email, c.name, ", ".join(f"{p.id} ({p.status})" for p in c.products))
        for c in billing.customers.list()
    ]
    say(table("Customers", ["id", "email", "name", "products"], rows))


def print_customer(billing: Autumn, customer_id: str, say: Callable[[str], None]) -> None:
    c = billing.customers.get(customer_id)
    say(
        table(
            f"Customer {c.id} - products",
            ["product", "status", "period end", "trial ends", "canceled"],
            [
                (p.id, p.status, p.current_period_end, p.trial_ends_at, p.canceled_at)
                for p in c.products
            ],
        )
    )
    say(
        table(
            f"Customer {c.id} - balances",
            ["feature", "granted", "remaining", "usage", "overage", "next reset"],
            [
                (
                    fid,
                    "unlimited" if b.unlimited else b.granted,
                    "unlimited" if b.unlimited else b.remaining,
                    b.usage,
                    b.overage,
                    b.next_reset_at,
                )
                for fid, b in c.features.items()
            ],
        )
    )
    invoices = billing.invoices.list(customer_id)
    if invoices:
        say(
            table(
                f"Customer {c.id} - invoices",
                ["created", "status", "total", "lines"],
                [
                    (
                        i.created_at,
                        i.status,
                        i.total,
                        "; ".join(f"{ln.description} {ln.amount}" for ln in i.lines),
                    )
                    for i in invoices
                ],
            )
        )
