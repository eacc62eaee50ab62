"""The everyday subcommands: customers, check, track, attach, process-due."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from decimal import Decimal

from autumn_cli.demo import print_customer, product_list
from autumn_cli.engine import engine, require_customer
from autumn_cli.progress import progress
from autumn_cli.registry import Commands
from autumn_cli.tables import money, table
from autumn_core import Autumn, Customer, InvalidRequest
from autumn_core.values import to_decimal

#: The largest page ``customers.list`` serves; ``--all`` walks pages of this size.
PAGE = 1000


def register(commands: Commands) -> None:
    group = commands.group("customers", help="list or show customers")
    p = group.add("list", customers_list, help="list customers, oldest first, one page at a time")
    p.add_argument(
        "--limit", type=int, default=100, help="customers per page, 1..1000 (default: %(default)s)"
    )
    p.add_argument(
        "--starting-after",
        metavar="ID",
        default=None,
        help="start after this customer id, the one printed under the previous page"
        " (default: from the first customer)",
    )
    p.add_argument("--all", action="store_true", help="list every customer (default: one page)")
    p = group.add("show", customers_show, help="a customer's products, balances and invoices")
    p.add_argument("customer_id", help="the customer's id")

    p = commands.add("check", check, help="may a customer use a feature? (reads only)")
    p.add_argument("customer_id", help="the customer's id")
    p.add_argument("feature_id", help="the feature's id")
    p.add_argument(
        "--required",
        default="1",
        help="units the customer is about to use (default: %(default)s)",
    )
    _create_option(p)

    p = commands.add(
        "track",
        track,
        help="record usage of a feature, or an event that features listen to",
        description="Record usage. A negative --value gives units back (a refund), where the"
        " library allows it: the balance grows by that much.",
    )
    p.add_argument("customer_id", help="the customer's id")
    p.add_argument(
        "feature_id", nargs="?", help="the feature used (or give --event instead, not both)"
    )
    p.add_argument("--event", default=None, help="an event name features listen to (default: none)")
    p.add_argument(
        "--value",
        default="1",
        help="units used; negative values refund usage (default: %(default)s)",
    )
    _create_option(p)

    p = commands.add("attach", attach, help="attach a product to a customer")
    p.add_argument("customer_id", help="the customer's id")
    p.add_argument("product_id", help="the product's id")
    p.add_argument(
        "--quantity",
        action="append",
        metavar="FEATURE=UNITS",
        help="units bought of a prepaid item; repeat for several (default: none)",
    )
    _create_option(p)

    commands.add(
        "process-due",
        process_due,
        help="apply resets, renewals, trial ends and scheduled switches that are due now",
    )


def _create_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--create",
        action="store_true",
        help="create the customer if the id is unknown (default: no, an unknown id is refused)",
    )


def _print(text: str) -> None:
    print(text)


def _pages(
    billing: Autumn, first: int, after: str | None, everything: bool
) -> Iterator[list[Customer]]:
    limit = PAGE if everything else first
    while True:
        page = billing.customers.list(limit=limit, starting_after=after)
        yield page
        if not everything or len(page) < limit:
            return
        after = page[-1].id


def _count_after(billing: Autumn, last_id: str) -> int:
    """How many customers follow ``last_id`` (read from the store: no customer is touched)."""
    count = 0
    with billing.store.transaction(write=False) as tx:
        after = tx.customer_pk(last_id)
        while True:
            states = tx.list_customers(limit=PAGE, starting_after=after, email=None)
            count += len(states)
            if len(states) < PAGE:
                return count
            after = states[-1].pk


def customers_list(args: argparse.Namespace) -> None:
    with engine(args, read=True) as billing:
        shown: list[Customer] = []
        for page in _pages(billing, args.limit, args.starting_after, args.all):
            shown.extend(page)
        rows = [(c.id, c.email, c.name, product_list(c)) for c in shown]
        print(table("Customers", ["id", "email", "name", "products"], rows), end="")
        last = shown[-1].id if shown else None
        if not args.all and len(shown) == args.limit and last is not None:
            more = _count_after(billing, last)
            if more:
                print(f"{more} more; --starting-after {last}")


def customers_show(args: argparse.Namespace) -> None:
    with engine(args, read=True) as billing:
        print_customer(billing, billing.customers.get(args.customer_id), _print)


def check(args: argparse.Namespace) -> None:
    with engine(args, read=not args.create) as billing:
        require_customer(billing, args.customer_id, args.create)
        r = billing.check(args.customer_id, args.feature_id, required_balance=args.required)
        feature = billing.catalog.feature(r.feature_id)
        if feature is not None and feature.type == "boolean":
            remaining: object = r.allowed
        else:
            remaining = "unlimited" if r.balance and r.balance.unlimited else None
            if remaining is None and r.balance is not None:
                remaining = r.balance.remaining
        required = "-" if feature is not None and feature.type == "boolean" else r.required_balance
        print(
            table(
                "Check",
                ["allowed", "feature", "required", "remaining"],
                [(r.allowed, r.feature_id, required, remaining)],
            ),
            end="",
        )


def track(args: argparse.Namespace) -> None:
    with engine(args, read=False) as billing:
        require_customer(billing, args.customer_id, args.create)
        if args.feature_id is not None and args.event is not None:
            raise InvalidRequest(
                f"give a feature or --event, not both: feature {args.feature_id!r} with event"
                f" {args.event!r} is ambiguous"
            )
        r = billing.track(
            args.customer_id, args.feature_id, event_name=args.event, value=args.value
        )
        rows = [
            (f, a, r.balances[f].remaining if f in r.balances else None)
            for f, a in r.applied.items()
        ]
        print(
            table(
                f"Tracked {r.value} (event {r.event_id})", ["feature", "applied", "remaining"], rows
            ),
            end="",
        )


def parse_quantities(raw: list[str] | None) -> dict[str, Decimal]:
    quantities: dict[str, Decimal] = {}
    for q in raw or []:
        feature, sep, amount = q.partition("=")
        if not sep or not feature:
            raise InvalidRequest(f"--quantity must look like FEATURE=UNITS, got {q!r}")
        quantities[feature] = to_decimal(amount, f"--quantity of {feature!r}")
    return quantities


def attach(args: argparse.Namespace) -> None:
    quantities = parse_quantities(args.quantity)
    with engine(args, read=False) as billing:
        require_customer(billing, args.customer_id, args.create)
        r = billing.attach(args.customer_id, args.product_id, quantities=quantities or None)
        total = money(r.invoice.total) if r.invoice else None
        status = r.product.status if r.product else None
        print(
            table(
                "Attach",
                ["scenario", "status", "invoice total", "checkout"],
                [(r.scenario, status, total, r.checkout_url)],
            ),
            end="",
        )


#: Customers handed to one ``process_due`` call: small enough for the bar to move.
DUE_BATCH = 50


def process_due(args: argparse.Namespace) -> None:
    with engine(args, read=False) as billing:
        now = billing.clock.now()
        with billing.store.transaction(write=False) as tx:
            due = len(tx.due_customer_pks(now, None))
        changed = 0
        with progress(total=due, unit="customer", desc="process-due") as bar:
            left = due
            while left > 0:
                batch = min(DUE_BATCH, left)
                changed += billing.process_due(limit=batch)
                left -= batch
                bar.update(batch)
        print(f"{changed} customers updated ({due} were due)")
