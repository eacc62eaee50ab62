"""Every store the engine runs on: memory, a SQLite file, a throwaway PostgreSQL database."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres"),
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
