"""The ``autumn`` console script.

Errors print one line (``error: <code>: <message>``) and exit with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from autumn_cli.demo import DEMO_START, example_catalog, print_customer, print_customers, run_demo
from autumn_cli.serve import add_serve_command
from autumn_cli.tables import table
from autumn_core import Autumn, AutumnError, Catalog, InvalidRequest, ManualClock, open
from autumn_core.model import PendingRecord

DEFAULT_DB = "sqlite:///autumn.db"
#: Marks a database made by ``autumn demo`` (so a re-run may recreate it).
DEMO_RECORD = "cli.demo"
#: The pushed catalog is kept in the store as a record of this kind, so every command
#: (and every process) on one database uses the same catalog.
CATALOG_RECORD = "cli.catalog"


def _say(text: str) -> None:
    print(text)


def _stored_catalog(url: str) -> Catalog | None:
    probe = open(url, catalog=Catalog())
    try:
        with probe.store.transaction(write=False) as tx:
            rec = tx.get_pending(CATALOG_RECORD)
    finally:
        probe.close()
    return None if rec is None else Catalog.from_toml(str(rec.payload["toml"]))


def _engine(args: argparse.Namespace) -> Autumn:
    if args.catalog:
        catalog = Catalog.from_file(args.catalog)
    else:
        catalog = _stored_catalog(args.db) or example_catalog()
    return open(args.db, catalog=catalog)


def _sqlite_file(url: str) -> str | None:
    """The file behind a ``sqlite:///`` URL (None for other stores and ``:memory:``)."""
    if not url.startswith("sqlite:///"):
        return None
    return url[len("sqlite:///") :] or None


def _demo_owns(url: str) -> bool:
    """Whether the database at ``url`` holds only what an earlier ``autumn demo`` wrote."""
    probe = open(url, catalog=Catalog())
    try:
        with probe.store.transaction(write=False) as tx:
            return tx.get_pending(DEMO_RECORD) is not None
    finally:
        probe.close()


def _demo(args: argparse.Namespace) -> None:
    url = args.db or DEFAULT_DB
    path = _sqlite_file(url)
    if path is not None and os.path.exists(path):
        # Re-running the demo starts from a clean slate, but only on a file the demo made:
        # a database with anyone else's data is never removed.
        if not _demo_owns(url):
            raise InvalidRequest(
                f"{path} holds data the demo did not create; run the demo elsewhere with "
                "--db sqlite:///demo.db"
            )
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    clock = ManualClock(DEMO_START)
    with open(url, catalog=example_catalog(), clock=clock) as billing:
        with billing.store.transaction() as tx:
            tx.put_pending(PendingRecord(DEMO_RECORD, "", DEMO_RECORD, {}, DEMO_START))
        run_demo(billing, clock.advance, _say)
    print(f"(state kept in {url})")


def _customers(args: argparse.Namespace) -> None:
    with _engine(args) as billing:
        if args.action == "list":
            print_customers(billing, _say)
        else:
            if not args.customer_id:
                raise SystemExit("error: usage: autumn customers show CUSTOMER_ID")
            print_customer(billing, args.customer_id, _say)


def _check(args: argparse.Namespace) -> None:
    with _engine(args) as billing:
        r = billing.check(args.customer_id, args.feature_id, required_balance=args.required)
        remaining = r.balance.remaining if r.balance else None
        print(
            table(
                "Check",
                ["allowed", "feature", "required", "remaining"],
                [(r.allowed, r.feature_id, r.required_balance, remaining)],
            )
        )


def _track(args: argparse.Namespace) -> None:
    with _engine(args) as billing:
        if args.event:
            r = billing.track(args.customer_id, event_name=args.event, value=args.value)
        else:
            r = billing.track(args.customer_id, args.feature_id, value=args.value)
        rows = [
            (f, a, r.balances[f].remaining if f in r.balances else None)
            for f, a in r.applied.items()
        ]
        print(
            table(
                f"Tracked {r.value} (event {r.event_id})", ["feature", "applied", "remaining"], rows
            )
        )


def _attach(args: argparse.Namespace) -> None:
    quantities = {}
    for q in args.quantity or []:
        feature, _, amount = q.partition("=")
        quantities[feature] = Decimal(amount)
    with _engine(args) as billing:
        r = billing.attach(args.customer_id, args.product_id, quantities=quantities or None)
        total = r.invoice.total if r.invoice else None
        status = r.product.status if r.product else None
        print(
            table(
                "Attach",
                ["scenario", "status", "invoice total", "checkout"],
                [(r.scenario, status, total, r.checkout_url)],
            )
        )


def _process_due(args: argparse.Namespace) -> None:
    with _engine(args) as billing:
        print(f"{billing.process_due()} customers updated")


def _catalog_push(args: argparse.Namespace) -> None:
    catalog = Catalog.from_file(args.path)
    with open(args.db, catalog=catalog) as billing, billing.store.transaction() as tx:
        tx.put_pending(
            PendingRecord(
                CATALOG_RECORD, "", CATALOG_RECORD, {"toml": catalog.to_toml()}, datetime.now(UTC)
            )
        )
    print(f"catalog pushed: {len(catalog.features)} features, {len(catalog.products)} products")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autumn", description="Embedded billing engine")
    parser.add_argument("--db", default=None, help=f"store URL (default {DEFAULT_DB})")
    parser.add_argument("--catalog", default=None, help="catalog TOML (default: the pushed one)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run an example scenario and print it").set_defaults(fn=_demo)
    p = sub.add_parser("customers", help="list or show customers")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("customer_id", nargs="?")
    p.set_defaults(fn=_customers)
    p = sub.add_parser("check", help="may a customer use a feature?")
    p.add_argument("customer_id")
    p.add_argument("feature_id")
    p.add_argument("--required", default="1")
    p.set_defaults(fn=_check)
    p = sub.add_parser("track", help="record usage")
    p.add_argument("customer_id")
    p.add_argument("feature_id", nargs="?")
    p.add_argument("--event", default=None)
    p.add_argument("--value", default="1")
    p.set_defaults(fn=_track)
    p = sub.add_parser("attach", help="attach a product")
    p.add_argument("customer_id")
    p.add_argument("product_id")
    p.add_argument("--quantity", action="append", help="feature=units for prepaid items")
    p.set_defaults(fn=_attach)
    sub.add_parser("process-due", help="apply resets and renewals that are due").set_defaults(
        fn=_process_due
    )
    p = sub.add_parser("catalog", help="catalog commands")
    p.add_argument("action", choices=["push"])
    p.add_argument("path")
    p.set_defaults(fn=_catalog_push)
    add_serve_command(sub, _engine)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.db is None:
        args.db = DEFAULT_DB
    try:
        args.fn(args)
    except AutumnError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, ArithmeticError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
