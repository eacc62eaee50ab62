"""``autumn catalog push`` and ``autumn catalog show``."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from autumn_cli.engine import (
    CliError,
    database_url,
    open_store,
    redacted,
    save_catalog,
    stored_catalog,
)
from autumn_cli.progress import progress
from autumn_cli.registry import Commands
from autumn_cli.tables import money, table
from autumn_core import Autumn, Catalog

#: Customers named per dropped product or feature in a refusal (the count is always given).
NAMED = 3


def register(commands: Commands) -> None:
    group = commands.group("catalog", help="push or show the catalog a database uses")
    p = group.add(
        "push",
        push,
        help="validate a catalog TOML file and make it the database's catalog",
        description="Validate a catalog TOML file and make it the catalog every command on this"
        " database uses.\nRefused (unless --force) when it is empty, or when it drops a product"
        " or a feature that customers still hold; the refusal lists them.",
    )
    p.add_argument("path", help="the catalog file (see docs/catalog.md), e.g. autumn.toml")
    p.add_argument(
        "--force",
        action="store_true",
        help="push even an empty catalog or one that drops what customers hold (default: no)",
    )
    p = group.add("show", show, help="print the catalog a command on this database would use")
    p.add_argument(
        "--example",
        action="store_true",
        help="show the built-in example catalog instead (default: no)",
    )


def _holdings(billing: Autumn, current: Catalog | None, catalog: Catalog) -> dict[str, list[str]]:
    """What customers hold that ``catalog`` lacks: "product 'x'" / "feature 'y'" -> customer ids.

    A customer holds the features of its balance rows and those its products grant in the
    ``current`` catalog (on/off features have no balance row)."""
    with billing.store.transaction(write=False) as tx:
        states = []
        after = None
        while True:
            page = tx.list_customers(limit=1000, starting_after=after, email=None)
            states.extend(page)
            if len(page) < 1000:
                break
            after = page[-1].pk
    held: dict[str, list[str]] = defaultdict(list)
    with progress(total=len(states), unit="customer", desc="checking holdings") as bar:
        for state in states:
            who = state.id or state.email or state.pk
            features = {row.feature_id for row in state.rows}
            for cp in state.products:
                if cp.status == "expired":
                    continue
                if catalog.product(cp.product_id) is None:
                    held[f"product {cp.product_id!r}"].append(who)
                definition = current.product(cp.product_id) if current is not None else None
                if definition is not None:
                    features.update(i.feature_id for i in definition.items)
            for fid in sorted(features):
                if catalog.feature(fid) is None:
                    held[f"feature {fid!r}"].append(who)
            bar.update(1)
    return dict(held)


def _listing(held: dict[str, list[str]]) -> str:
    parts = []
    for what, who in sorted(held.items()):
        names = ", ".join(who[:NAMED]) + (", ..." if len(who) > NAMED else "")
        plural = "customer" if len(who) == 1 else "customers"
        parts.append(f"{what} ({len(who)} {plural}: {names})")
    return "; ".join(parts)


def push(args: argparse.Namespace) -> None:
    catalog = Catalog.from_file(args.path)
    url = database_url(args)
    if not catalog.products and not catalog.features and not args.force:
        raise CliError(
            "empty_catalog",
            f"{args.path} defines no feature and no product; pushing it would leave"
            f" {redacted(url)} with nothing to sell (pass --force to push it anyway)",
        )
    # Opened on the new catalog only after the check: opening registers product versions.
    with open_store(args, Catalog(), read=False) as probe:
        found = stored_catalog(url, probe)
        held = _holdings(probe, found[0] if found else None, catalog)
    if held and not args.force:
        raise CliError(
            "catalog_drops_holdings",
            f"{args.path} drops what customers still hold: {_listing(held)}; pass --force to"
            " push it anyway",
        )
    if held:
        print(f"warning: pushed over holdings: {_listing(held)}", file=sys.stderr)
    with open_store(args, catalog, read=False) as billing:
        save_catalog(billing, catalog)
    print(
        f"catalog pushed to {redacted(url)}: {len(catalog.features)} features,"
        f" {len(catalog.products)} products"
    )


def show(args: argparse.Namespace) -> None:
    if args.example:
        from autumn_cli.demo import example_catalog

        catalog, source = example_catalog(), "the built-in example catalog"
    elif getattr(args, "catalog", None):
        catalog, source = Catalog.from_file(args.catalog), args.catalog
    else:
        with open_store(args, Catalog(), read=True) as probe:
            found = stored_catalog(database_url(args), probe)
        if found is None:
            from autumn_cli.demo import example_catalog

            catalog = example_catalog()
            source = (
                f"the built-in example catalog (nothing was pushed to"
                f" {redacted(database_url(args))})"
            )
        else:
            catalog = found[0]
            source = f"pushed to {redacted(database_url(args))} at {found[1]:%Y-%m-%d %H:%M} UTC"
    print(f"Catalog: {source}")
    print(
        table(
            "Features",
            ["id", "type", "name", "events"],
            [(f.id, f.type, f.name, ", ".join(f.event_names)) for f in catalog.features],
        ),
        end="",
    )
    rows = []
    for p in catalog.products:
        price = None
        if p.price is not None:
            price = f"{money(p.price.amount)} / {p.price.interval}"
        flags = [flag for flag in ("default", "add_on") if getattr(p, flag)] + (
            [f"trial {p.free_trial.length} {p.free_trial.duration}"] if p.free_trial else []
        )
        rows.append(
            (p.id, p.name, price, ", ".join(flags), ", ".join(i.feature_id for i in p.items))
        )
    print(table("Products", ["id", "name", "price", "flags", "items"], rows), end="")
