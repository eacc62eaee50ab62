"""``autumn test-catalog autumn.toml [--examples N] [--store URL] [--seed S]``.

Runs the test kit's stateful machine (``autumn_core.testing.catalog_machine``) against a user's
catalog and prints any counterexample as the shortest list of calls found, then the same calls
as a pytest function ready to paste into a test.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from autumn_core import Catalog, InvalidRequest

DEFAULT_EXAMPLES = 300
DEFAULT_STEPS = 20


def register(commands: Any) -> None:
    """Add the ``test-catalog`` command to the ``autumn`` subcommands."""
    p = commands.add(
        "test-catalog",
        main,
        help="property-test a catalog: random calls against the engine's invariants",
    )
    p.add_argument("path", help="the catalog (autumn.toml)")
    p.add_argument(
        "--examples", type=int, default=DEFAULT_EXAMPLES, help="runs to try (default: %(default)s)"
    )
    p.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help="most calls per run (default: %(default)s)"
    )
    p.add_argument(
        "--store",
        default="memory://",
        help="memory:// (default), sqlite:///scratch.db (files next to it), or a scratch "
        "postgresql://... database (its customers deleted before every run)",
    )
    p.add_argument(
        "--gateway",
        choices=["memory", "none"],
        default="memory",
        help="payment provider (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")


def main(args: argparse.Namespace) -> None:
    status = test_catalog(
        args.path,
        examples=args.examples,
        steps=args.steps,
        store=args.store,
        gateway=args.gateway,
        seed=args.seed,
    )
    if status:
        raise SystemExit(status)


def test_catalog(
    path: str,
    *,
    examples: int = DEFAULT_EXAMPLES,
    steps: int = DEFAULT_STEPS,
    store: str = "memory://",
    gateway: str = "memory",
    seed: int = 0,
    out: TextIO | None = None,
) -> int:
    """Run the machine on the catalog at ``path``; 0 when no counterexample, 1 otherwise."""
    out = out or sys.stdout
    if examples < 1 or steps < 1:
        print("error: --examples and --steps must be at least 1", file=sys.stderr)
        return 2
    catalog = Catalog.from_file(path)
    try:
        # The kit needs Hypothesis, which only the `testing` extra installs; the rest of the
        # command line must work without it.
        kit: Any = importlib.import_module("autumn_core.testing")
    except ImportError as exc:
        raise InvalidRequest(
            "autumn test-catalog needs the testing extra: pip install "
            f"'autumn-embedded[testing]' ({exc.name} is missing)"
        ) from None
    catalog_machine, fresh_stores, run_machine = (
        kit.catalog_machine,
        kit.fresh_stores,
        kit.run_machine,
    )
    gateway_factory = importlib.import_module("autumn_core.testing.stores").gateway_factory
    stores = fresh_stores(store)
    stores().close()  # a store that cannot be opened is an error, not a counterexample
    gateways: Callable[[], Any] | None = gateway_factory(gateway) if gateway != "none" else None
    machine = catalog_machine(catalog, store_factory=stores, gateway_factory=gateways)
    began = time.monotonic()
    try:
        found = run_machine(machine, examples=examples, steps=steps, seed_value=seed)
    finally:
        stores.cleanup()
    took = time.monotonic() - began
    where = f"{len(catalog.products)} products on {store}"
    if found is None:
        print(
            f"no counterexample in {examples} runs of up to {steps} calls ({where}, "
            f"seed {seed}, {took:.1f}s)",
            file=out,
        )
        return 0
    print(found.report, file=out)
    return 1
