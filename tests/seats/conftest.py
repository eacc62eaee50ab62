"""Engines on every store (memory, a SQLite file, the throwaway PostgreSQL cluster), one fixture.

``make(catalog)`` builds an engine on the store the test is parametrised with, at a manual
clock and an in-process gateway, and closes what it built after the test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from autumn_core import Autumn, Catalog, ManualClock
from autumn_memory import MemoryGateway, MemoryStore
from tests.pg_cluster import empty_autumn_tables
from tests.postgres import conftest as _pg

# The session's throwaway cluster: the PostgreSQL tests' own fixture (in tests/postgres, or in
# tests/ with the behaviour suite's store fixtures).
if hasattr(_pg, "pg_cluster"):
    pg_cluster = _pg.pg_cluster

_databases = itertools.count()

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
STORES = ["memory", "sqlite", "postgres"]

Make = Callable[..., Autumn]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(scope="session")
def core_pg_url(pg_cluster: Any) -> str:
    """A migrated database of the session cluster for these tests (emptied for each store)."""
    from autumn_postgres import PostgresStore

    url: str = pg_cluster.create_database(f"core{next(_databases)}")
    PostgresStore(url).close()
    return url


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_store(request: pytest.FixtureRequest, store_kind: str, tmp_path: Path) -> Iterator[Any]:
    """A factory of fresh stores of the parametrised kind: each call closes the previous one and
    returns a new, empty store (a property test takes one per example)."""
    built: list[Any] = []
    count = 0

    def build() -> Any:
        nonlocal count
        count += 1
        while built:
            built.pop().close()
        if store_kind == "memory":
            store: Any = MemoryStore()
        elif store_kind == "sqlite":
            from autumn_sqlite import SqliteStore

            store = SqliteStore(str(tmp_path / f"billing{count}.db"))
        else:
            from autumn_postgres import PostgresStore

            url = request.getfixturevalue("core_pg_url")
            empty_autumn_tables(url, restart_identity=True)
            store = PostgresStore(url)
        built.append(store)
        return store

    yield build
    for store in built:
        store.close()


@pytest.fixture
def second_store(
    request: pytest.FixtureRequest, store_kind: str, tmp_path: Path
) -> Iterator[Callable[[Any], Any]]:
    """second_store(store) -> another store on the same data, as a second process would open
    it (MemoryStore lives in one process: the same store)."""
    opened: list[Any] = []

    def build(store: Any) -> Any:
        if store_kind == "memory":
            return store
        if store_kind == "sqlite":
            from autumn_sqlite import SqliteStore

            other: Any = SqliteStore(store.path)
        else:
            from autumn_postgres import PostgresStore

            other = PostgresStore(request.getfixturevalue("core_pg_url"))
        opened.append(other)
        return other

    yield build
    for store in opened:
        store.close()


@pytest.fixture
def make(new_store: Callable[[], Any], clock: ManualClock) -> Make:
    def build(catalog: Catalog, **kw: Any) -> Autumn:
        kw.setdefault("gateway", MemoryGateway())
        kw.setdefault("clock", clock)
        return Autumn(catalog, store=new_store(), **kw)

    return build
