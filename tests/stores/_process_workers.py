"""Code run in child processes by the multi-process tests (kept light to import under spawn)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from typing import Any

from autumn_core import Autumn, Catalog, Feature, FreeTrial, Item, ManualClock, Price, Product
from autumn_core.errors import AutumnError, InsufficientBalance
from autumn_sqlite import SqliteStore

START = datetime(2025, 1, 1, tzinfo=UTC)


#: The allowance of the default product: huge, or exactly 100 for the overdraw race.
BIG = 10**9


def catalog(included: int) -> Catalog:
    """One metered feature granted by one default product, never reset (so a test's numbers
    are exact whatever the clock)."""
    return Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product("free", default=True, items=[Item.feature("messages", included=included)])
        ],
    )


def engine(path: str, included: int = BIG) -> Autumn:
    return Autumn(catalog(included), store=SqliteStore(path), clock=ManualClock(START))


def track_many_times(path: str, customer_id: str, n: int, start: Barrier, out: Any) -> None:
    """``n`` x ``track(1)``; report (errors, worst latency in seconds)."""
    billing = engine(path)
    errors: list[str] = []
    worst = 0.0
    start.wait()
    for _ in range(n):
        t = time.perf_counter()
        try:
            billing.track(customer_id, "messages", value=1)
        except AutumnError as exc:
            errors.append(repr(exc))
        worst = max(worst, time.perf_counter() - t)
    billing.close()
    out.put((errors, worst))


def track_with_reject(path: str, customer_id: str, n: int, start: Barrier, out: Any) -> None:
    """``n`` x ``track(1, overage="reject")``; report (accepted, rejected, other errors)."""
    billing = engine(path, 100)
    accepted = rejected = 0
    others: list[str] = []
    start.wait()
    for _ in range(n):
        try:
            billing.track(customer_id, "messages", value=1, overage="reject")
            accepted += 1
        except InsufficientBalance:
            rejected += 1
        except AutumnError as exc:
            others.append(repr(exc))
    billing.close()
    out.put((accepted, rejected, others))


def track_until_killed(path: str, customer_id: str) -> None:
    """Track forever, printing how many tracks have returned (the parent kills us)."""
    billing = engine(path)
    i = 0
    while True:
        billing.track(customer_id, "messages", value=1)
        i += 1
        print(i, flush=True)


def trial_catalog() -> Catalog:
    """A paid product with a card-less trial limited to one per device fingerprint."""
    return Catalog(
        features=[Feature.boolean("sso")],
        products=[
            Product(
                "pro",
                price=Price(20),
                free_trial=FreeTrial(14, unique_fingerprint=True, card_required=False),
                items=[Item.feature("sso")],
            )
        ],
    )


def attach_trial(path: str, customer_id: str, start: Barrier, out: Any) -> None:
    """Create ``customer_id`` on the shared fingerprint and attach pro; report its trial end."""
    billing = Autumn(trial_catalog(), store=SqliteStore(path), clock=ManualClock(START))
    start.wait()
    try:
        billing.customers.create(customer_id, fingerprint="device-1")
        result = billing.attach(customer_id, "pro")
        out.put((customer_id, result.trial_ends_at, None))
    except AutumnError as exc:
        out.put((customer_id, None, repr(exc)))
    finally:
        billing.close()
