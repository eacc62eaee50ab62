"""Shared fixtures: a reference catalog, the stores, and an engine on each store at a fixed
instant.

Every behaviour test that takes ``billing`` (or builds engines with ``new_store``) runs once per
store: MemoryStore, SQLite (a file in the test's tmp_path) and PostgreSQL (the session's
throwaway cluster, started on first use). A PostgreSQL store gets a migrated database of the
session emptied for it by ``DELETE`` (about 1 ms; ``TRUNCATE`` took about 190 ms and a database
cloned from a migrated template about 1.4 s on the CI machine). The n-th store a test opens gets
the n-th such database, so stores opened side by side in one test are independent.

A test that needs what only some stores can do asks for it by capability
(``needs(store, multi_process=True)``), never by naming a backend.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from autumn_core import (
    Autumn,
    Catalog,
    Feature,
    FreeTrial,
    Item,
    ManualClock,
    Price,
    Product,
)
from autumn_core.ports import Store
from autumn_memory import MemoryStore
from tests.pg_cluster import PgCluster, empty_autumn_tables

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


def reference_catalog() -> Catalog:
    """The fixtures of DOMAIN.md §19, trimmed to what the foundation tests use."""
    return Catalog(
        features=[
            Feature.metered("messages", name="Messages", event_names=["chat"]),
            Feature.metered("words"),
            Feature.metered("action1", event_names=["action-event"]),
            Feature.metered("action3", event_names=["action-event"]),
            Feature.allocated("users"),
            Feature.boolean("dashboard"),
            Feature.credit_system("credits", costs={"action1": 1, "words": "2.5"}),
        ],
        products=[
            Product(
                "free",
                name="Free",
                default=True,
                items=[
                    Item.feature("dashboard"),
                    Item.feature("messages", included=1000, reset="month"),
                ],
            ),
            Product("seats5", group="seats", items=[Item.feature("users", included=5)]),
            Product(
                "actions",
                add_on=True,
                items=[
                    Item.feature("action1", included=200, reset="month"),
                    Item.feature("action3", included=150, reset="month"),
                ],
            ),
            Product(
                "credits100",
                add_on=True,
                items=[Item.feature("credits", included=100, reset="month")],
            ),
            Product("unlimited", add_on=True, items=[Item.feature("words", unlimited=True)]),
            Product(
                "pro",
                price=Price(20),
                free_trial=FreeTrial(14, card_required=False),
                items=[Item.feature("messages", included=5000, reset="month")],
            ),
        ],
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


STORES = ("memory", "sqlite", "postgres")

#: ``new_store(slot=None)``: a fresh, empty store of the test's kind (``slot``: reuse the n-th
#: database of this test, emptied again; for a machine that opens one store per example).
StoreFactory = Callable[..., Store]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's cluster (fsync off, loopback, free port); removed at the end."""
    import psycopg

    # pg_stat_statements lets tests count the statements a call sends (server-side truth).
    cluster = PgCluster(
        max_connections=300, extra_settings={"shared_preload_libraries": "pg_stat_statements"}
    )
    cluster.start()  # raises ClusterError (a test error, not a skip) when it cannot start
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    try:
        yield cluster
    finally:
        cluster.stop()


class PgDatabases:
    """Migrated databases of the session cluster, created on first use and reused, each
    emptied (``DELETE`` from every autumn table but the migration history) when handed out."""

    def __init__(self, cluster: PgCluster) -> None:
        self.cluster = cluster
        self._urls: list[str] = []

    def url(self, index: int) -> str:

        from autumn_postgres import PostgresStore

        while len(self._urls) <= index:
            url = self.cluster.create_database(f"behaviour{len(self._urls)}")
            PostgresStore(url).close()  # migrate once
            self._urls.append(url)
        url = self._urls[index]
        empty_autumn_tables(url)
        return url


@pytest.fixture(scope="session")
def pg_databases(pg_cluster: PgCluster) -> PgDatabases:
    return PgDatabases(pg_cluster)


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_store(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StoreFactory]:
    """A factory of fresh, empty stores of the test's kind; every store is closed afterwards."""
    opened: list[Any] = []
    counter = itertools.count()

    def make(slot: int | None = None) -> Store:
        n = next(counter) if slot is None else slot
        store: Any
        if store_kind == "memory":
            store = MemoryStore()
        elif store_kind == "sqlite":
            from autumn_sqlite import SqliteStore

            path = tmp_path / f"store{n}.db"
            if slot is not None:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            store = SqliteStore(path)
        else:
            from autumn_postgres import PostgresStore

            databases: PgDatabases = request.getfixturevalue("pg_databases")
            store = PostgresStore(databases.url(n), max_size=4)
        opened.append(store)
        return store  # type: ignore[no-any-return]

    try:
        yield make
    finally:
        for store in opened:
            store.close()


def needs(store: Any, **capabilities: bool) -> None:
    """Skip unless the store declares each capability (``multi_process=True`` ...)."""
    for name, wanted in capabilities.items():
        if getattr(store.capabilities, name) is not wanted:
            pytest.skip(f"the store does not declare {name}={wanted}")


@pytest.fixture
def billing(clock: ManualClock, new_store: StoreFactory) -> Autumn:
    return Autumn(reference_catalog(), store=new_store(), clock=clock)
