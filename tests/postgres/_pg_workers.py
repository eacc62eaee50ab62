"""Code run in spawned child processes by the PostgreSQL tests (light to import under spawn)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from types import TracebackType
from typing import Any

from autumn_core import Autumn, Catalog, Feature, FreeTrial, Item, ManualClock, Price, Product
from autumn_core.changes import CustomerChange
from autumn_core.errors import AutumnError, InsufficientBalance
from autumn_core.model import CustomerState
from autumn_core.ports import StoreCapabilities
from autumn_postgres import PostgresStore
from autumn_postgres.store import PostgresTransaction


def open_store(url: str, start: Barrier, out: Any) -> None:
    """Open (and so migrate) a store at the same moment as the siblings; report the error."""
    start.wait()
    try:
        store = PostgresStore(url)
        store.close()
    except AutumnError as exc:  # pragma: no cover - reported to the parent
        out.put(repr(exc))
        return
    out.put(None)


# -- engines on PostgreSQL, for the facade-level process tests ------------------------------

START = datetime(2025, 1, 1, tzinfo=UTC)
#: The allowance of the default product: huge, or exactly 100 for the overdraw race.
BIG = 10**9


def catalog(included: int = BIG) -> Catalog:
    """One metered feature granted by a default product that never resets (exact numbers
    whatever the clock), and a paid product with a fingerprint-unique trial."""
    return Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product("free", default=True, items=[Item.feature("messages", included=included)]),
            Product(
                "pro",
                price=Price(20),
                free_trial=FreeTrial(14, unique_fingerprint=True, card_required=False),
                items=[Item.feature("messages", included=1000, reset="month")],
            ),
        ],
    )


class _NaiveTransaction:
    """The deliberately wrong track path: read the customer without a lock, then write the
    whole state back blindly. Kept only here, to prove the hot-customer test has teeth."""

    def __init__(self, tx: PostgresTransaction) -> None:
        self._tx = tx

    def __enter__(self) -> _NaiveTransaction:
        self._tx.__enter__()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._tx.__exit__(t, e, tb)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def customer_pk(self, customer_id: str) -> str | None:
        row = self._tx._one("SELECT pk FROM autumn_customers WHERE id = %s", (customer_id,))
        return None if row is None else str(row[0])

    def load_customer(self, pk: str, *, for_update: bool = False) -> CustomerState | None:
        return self._tx.load_customer(pk, for_update=False)  # no lock: the bug

    def save_customer(self, change: CustomerChange) -> None:
        self._tx._held.pop(change.pk, None)  # forget the read version: blind overwrite
        self._tx.save_customer(change)


class NaiveStore:
    capabilities = StoreCapabilities(multi_process=True, durable=True)

    def __init__(self, url: str) -> None:
        self.inner = PostgresStore(url)

    def transaction(self, *, write: bool = True) -> _NaiveTransaction:
        return _NaiveTransaction(self.inner.transaction(write=write))

    def close(self) -> None:
        self.inner.close()


@contextmanager
def engine(url: str, included: int = BIG, *, naive: bool = False) -> Iterator[Autumn]:
    store: Any = NaiveStore(url) if naive else PostgresStore(url, max_size=2)
    billing = Autumn(catalog(included), store=store, clock=ManualClock(START))
    try:
        yield billing
    finally:
        billing.close()


def track_many_times(
    url: str, customer_id: str, n: int, naive: bool, start: Barrier, out: Any
) -> None:
    """``n`` x ``track(1)``; report (errors, worst latency in seconds)."""
    errors: list[str] = []
    worst = 0.0
    with engine(url, naive=naive) as billing:
        start.wait()
        for _ in range(n):
            t = time.perf_counter()
            try:
                billing.track(customer_id, "messages", value=1)
            except AutumnError as exc:
                errors.append(repr(exc))
            worst = max(worst, time.perf_counter() - t)
    out.put((errors, worst))


def track_with_reject(url: str, customer_id: str, n: int, start: Barrier, out: Any) -> None:
    """``n`` x ``track(1, overage="reject")``; report (accepted, rejected, other errors)."""
    accepted = rejected = 0
    others: list[str] = []
    with engine(url, 100) as billing:
        start.wait()
        for _ in range(n):
            try:
                billing.track(customer_id, "messages", value=1, overage="reject")
                accepted += 1
            except InsufficientBalance:
                rejected += 1
            except AutumnError as exc:
                others.append(repr(exc))
    out.put((accepted, rejected, others))


def attach_trial(url: str, customer_id: str, start: Barrier, out: Any) -> None:
    """Attach "pro" (trial unique per fingerprint); report (trial_ends_at is set, error)."""
    with engine(url) as billing:
        start.wait()
        try:
            result = billing.attach(customer_id, "pro")
        except AutumnError as exc:
            out.put((False, repr(exc)))
            return
    out.put((result.trial_ends_at is not None, None))
