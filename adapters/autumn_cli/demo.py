"""``autumn demo``: an example catalog and a realistic month of billing, printed as tables."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import datetime, timedelta

from autumn_cli.tables import cell, money, table
from autumn_core import (
    Autumn,
    ByEmail,
    Catalog,
    Customer,
    CustomerData,
    Feature,
    FreeTrial,
    Item,
    ManualClock,
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


#: The story's first afternoon, from the first sign-up to bob's upgrade; a calendar month later
#: (when bob's first month ends) is the moment the demo runs.
FIRST_AFTERNOON = timedelta(hours=4, minutes=10)


def story_start(end: datetime) -> datetime:
    """When the story starts so that it ends at ``end``: a calendar month before bob's upgrade."""
    upgrade = end - FIRST_AFTERNOON
    year, month = (upgrade.year, upgrade.month - 1) if upgrade.month > 1 else (upgrade.year - 1, 12)
    day = min(upgrade.day, calendar.monthrange(year, month)[1])
    return upgrade.replace(year=year, month=month, day=day) - FIRST_AFTERNOON


def run_demo(
    billing: Autumn, clock: ManualClock, end: datetime, say: Callable[[str], None]
) -> None:
    """Play the scenario on ``billing``, whose ``clock`` starts at ``story_start(end)``."""
    advance = clock.advance
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
    trial_end = cell(first.trial_ends_at)
    say(f"alice attaches pro: {first_status}, trial ends {trial_end}")
    advance(hours=1)
    billing.customers.create("alice-2", email="alice+2@example.com", fingerprint="device-A")
    second = billing.attach("alice-2", "pro")
    status = second.product.status if second.product else "-"
    total = money(second.invoice.total if second.invoice else 0)
    say(f"alice-2 on the same device attaches pro: {status}, no trial, charged ${total}")

    say("\n== Usage")
    for _ in range(3):
        billing.track("bob", "messages", value=30)
    billing.track("alice", event_name="chat", value=250)
    denied = billing.check("bob", "messages", required_balance=20)
    say(f"bob used 90 of 100 free messages; may he send 20 more? {cell(denied.allowed)}")

    say("\n== Upgrade")  # FIRST_AFTERNOON after the first sign-up: the steps above sum to it
    upgrade = billing.attach("bob", "pro", free_trial=None)
    paid = money(upgrade.invoice.total if upgrade.invoice else 0)
    say(f"bob upgrades free -> pro: {upgrade.scenario}, invoice ${paid}")
    billing.track("bob", "messages", value=1250)
    say("bob sends 1250 messages on pro (1000 included, the rest billed at $0.01)")

    say("\n== A month later (now): renewals")
    clock.set(end)
    changed = billing.process_due()
    say(f"process_due applied due work to {changed} customers")

    say("")
    customers = billing.customers.list(limit=1000)
    print_customers(billing, customers, say)
    for c in customers:
        print_customer(billing, c, say)


def product_list(c: Customer) -> str:
    return ", ".join(f"{p.id} ({p.status})" for p in c.products)


def print_customers(billing: Autumn, customers: list[Customer], say: Callable[[str], None]) -> None:
    rows = [(c.id, c.email, c.name, product_list(c)) for c in customers]
    say(table("Customers", ["id", "email", "name", "products"], rows))


def print_customer(billing: Autumn, c: Customer, say: Callable[[str], None]) -> None:
    label = c.id if c.id is not None else f"<no id> {c.email or ''}".strip()
    say(
        table(
            f"Customer {label} - products",
            ["product", "status", "period end", "trial ends", "canceled"],
            [
                (p.id, p.status, p.current_period_end, p.trial_ends_at, p.canceled_at)
                for p in c.products
            ],
        )
    )
    rows: list[tuple[object, ...]] = []
    for fid, b in c.features.items():
        feature = billing.catalog.feature(fid)
        if feature is not None and feature.type == "boolean":
            # An on/off feature has no amounts: it is granted or it is not.
            rows.append((fid, True, True, None, None, None))
            continue
        rows.append(
            (
                fid,
                "unlimited" if b.unlimited else b.granted,
                "unlimited" if b.unlimited else b.remaining,
                b.usage,
                b.overage,
                b.next_reset_at,
            )
        )
    say(
        table(
            f"Customer {label} - balances",
            ["feature", "granted", "remaining", "usage", "overage", "next reset"],
            rows,
        )
    )
    if c.id is None:
        return
    invoices = billing.invoices.list(c.id)
    if invoices:
        say(
            table(
                f"Customer {label} - invoices",
                ["created", "status", "total", "lines"],
                [
                    (
                        i.created_at,
                        i.status,
                        money(i.total),
                        "; ".join(f"{ln.description} {money(ln.amount)}" for ln in i.lines),
                    )
                    for i in invoices
                ],
            )
        )
