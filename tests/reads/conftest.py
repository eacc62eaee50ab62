"""Every store the engine runs on: memory, a SQLite file, a throwaway PostgreSQL database."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from autumn_core.errors import StoreError
from autumn_core.ports import Store
from autumn_memory import MemoryStore
from autumn_postgres import PostgresStore
from autumn_sqlite import SqliteStore
from tests.pg_cluster import PgCluster

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def reads_pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster()
    cluster.start()  # raises (a test error, never a skip) when it cannot start
    try:
        yield cluster
    finally:
        cluster.stop()


#: A paid attach on PostgreSQL fails today with 42P05 (a prepared statement name reused on a
#: pooled connection); the PostgreSQL store's fix removes this mark.
_PG_42P05 = pytest.mark.xfail(
    raises=StoreError, strict=False, reason="PostgreSQL paid attach: 42P05 (being fixed)"
)


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=_PG_42P05),
        "postgres-unpipelined",  # the same store without psycopg's pipeline: passes today
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """One store shared by every engine of a test (each engine is another process's view)."""
    opened: Store
    if request.param == "memory":
        opened = MemoryStore()
    elif request.param == "sqlite":
        opened = SqliteStore(str(tmp_path / "reads.db"))
    else:
        cluster: PgCluster = request.getfixturevalue("reads_pg_cluster")
        name = f"reads{next(_databases)}"
        pipeline = request.param == "postgres"
        opened = PostgresStore(cluster.create_database(name), pipeline=pipeline)
    try:
        yield opened
    finally:
        opened.close()
