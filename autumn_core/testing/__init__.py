"""Hypothesis strategies and helpers for property tests of your own billing rules.

Everything here runs on the in-process adapters (``MemoryStore``, ``MemoryGateway``) and a
``ManualClock``, so a property test is fast and deterministic. See ``README.md`` next to this
module for a ten-line example.

Strategies
    ``customer_ids()``, ``fingerprints()`` (some shared, some missing), ``emails()``,
    ``track_values()`` (exact Decimals), ``free_trials()``, ``trial_products()`` and
    ``trial_catalogs()`` (catalogs of products with trials, unique-fingerprint or not).
Helpers
    ``engine(catalog, ...)`` builds an ``Autumn`` on memory adapters at a fixed instant;
    ``trials_granted(billing, customer_ids, product_id)`` counts who ever trialed a product.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from autumn_core.catalog import Catalog, Feature, FreeTrial, Item, Price, Product
from autumn_core.clock import ManualClock
from autumn_core.facade import Autumn
from autumn_core.facade import open as open_engine
from autumn_core.ports import Gateway
from autumn_core.testing.invariants import Trial
from autumn_core.testing.machine import CatalogMachine, InvariantBroken
from autumn_core.testing.machine_rules import catalog_machine
from autumn_core.testing.runner import Counterexample, run_machine
from autumn_core.testing.stores import StoreFactory, fresh_stores

#: The instant every helper engine starts at (a Monday, mid-month, 30-day-month friendly).
START = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)

_ID_ALPHABET = st.characters(
    min_codepoint=33, max_codepoint=126, blacklist_characters="\\"
)  # printable ASCII, no whitespace


def customer_ids() -> st.SearchStrategy[str]:
    """Valid customer ids (C2): 1-40 printable characters without whitespace."""
    return st.text(_ID_ALPHABET, min_size=1, max_size=40)


def emails() -> st.SearchStrategy[str]:
    local = st.text(
        st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789._+-"), min_size=1, max_size=12
    )
    domain = st.sampled_from(["example.com", "corp.io", "mail.test", "EXAMPLE.com"])
    return st.builds(lambda lo, d: f"{lo}@{d}", local, domain)


def fingerprints(pool: int = 3) -> st.SearchStrategy[str | None]:
    """A fingerprint from a small pool (so they collide across customers), or None."""
    return st.one_of(st.none(), st.sampled_from([f"fp-{i}" for i in range(pool)]))


def track_values(max_value: int = 1000, places: int = 2) -> st.SearchStrategy[Decimal]:
    """Exact, finite, non-negative Decimal track values."""
    return st.decimals(
        min_value=0, max_value=max_value, places=places, allow_nan=False, allow_infinity=False
    )


def free_trials(*, card_required: bool | None = None) -> st.SearchStrategy[FreeTrial]:
    return st.builds(
        FreeTrial,
        length=st.integers(1, 30),
        duration=st.sampled_from(["day", "week", "month"]),
        unique_fingerprint=st.booleans(),
        card_required=st.booleans() if card_required is None else st.just(card_required),
    )


def trial_products(
    ids: Iterable[str] = ("basic", "plus", "max"), *, feature: str = "messages"
) -> st.SearchStrategy[list[Product]]:
    """Paid monthly products in one group, each with a trial (some unique-fingerprint)."""
    ids = list(ids)

    def build(trials: list[FreeTrial], prices: list[int]) -> list[Product]:
        return [
            Product(
                pid,
                price=Price(price),
                free_trial=trial,
                items=[Item.feature(feature, included=100 * (i + 1), reset="month")],
            )
            for i, (pid, trial, price) in enumerate(zip(ids, trials, prices, strict=True))
        ]

    n = len(ids)
    return st.builds(
        build,
        st.lists(free_trials(), min_size=n, max_size=n),
        st.lists(st.integers(1, 100), min_size=n, max_size=n),
    )


def trial_catalogs() -> st.SearchStrategy[Catalog]:
    """A catalog of one metered feature, a free default and trial products."""
    return st.builds(
        lambda products: Catalog(
            features=[Feature.metered("messages")],
            products=[
                Product(
                    "free",
                    default=True,
                    items=[Item.feature("messages", included=10, reset="month")],
                ),
                *products,
            ],
        ),
        trial_products(),
    )


def engine(
    catalog: Catalog,
    *,
    gateway: Gateway | None = None,
    start: datetime = START,
    **kwargs: Any,
) -> Autumn:
    """An ``Autumn`` on a fresh in-memory store (``memory://``, found through the store entry
    points like any other, so the core imports no adapter) with a ``ManualClock`` at ``start``."""
    return open_engine(
        "memory://", catalog=catalog, gateway=gateway, clock=ManualClock(start), **kwargs
    )


def clock_of(billing: Autumn) -> ManualClock:
    clock = billing.clock
    if not isinstance(clock, ManualClock):
        raise TypeError("the engine was not built with a ManualClock")
    return clock


def trials_granted(billing: Autumn, customer_ids: Iterable[str], product_id: str) -> int:
    """How many of these customers ever got ``product_id`` with a trial (any status).

    Reads the stored history (expired products included), not just the live view.
    """
    count = 0

    def body(tx: Any) -> None:
        nonlocal count
        for cid in customer_ids:
            pk = tx.customer_pk(cid)
            state = tx.load_customer(pk) if pk else None
            if state is None:
                continue
            count += sum(
                1
                for p in state.products
                if p.product_id == product_id
                and p.trial_ends_at is not None
                and p.status != "scheduled"
            )

    billing._ctx.run(body, write=False)
    return count


__all__ = [
    "START",
    "CatalogMachine",
    "Counterexample",
    "InvariantBroken",
    "StoreFactory",
    "Trial",
    "catalog_machine",
    "clock_of",
    "customer_ids",
    "emails",
    "engine",
    "fingerprints",
    "free_trials",
    "fresh_stores",
    "invariant",
    "precondition",
    "rule",
    "run_machine",
    "track_values",
    "trial_catalogs",
    "trial_products",
    "trials_granted",
]
