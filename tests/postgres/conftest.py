"""Fixtures for the PostgreSQL tests: one throwaway cluster per test session, one database per test.

The cluster is started by the session itself (``tests/pg_cluster.py``); no test relies on a
server it did not start. If the cluster cannot start, every test that needs it fails with the
reason (a missing binary, a missing ``postgres`` OS user, the server log): never a skip, so a
machine that cannot run PostgreSQL is noticed, not silently under-tested.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

from autumn_postgres import PostgresStore, schema
from tests.pg_cluster import PgCluster

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's cluster (fsync off, loopback, free port); removed at the end."""
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


class PgDatabase:
    """A fresh, empty database of the session cluster, dropped after the test."""

    def __init__(self, cluster: PgCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.url = cluster.create_database(name)


@pytest.fixture
def pg_db(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    db = PgDatabase(pg_cluster, f"t{next(_counter)}")
    try:
        yield db
    finally:
        pg_cluster.drop_database(db.name)


@pytest.fixture
def pg_url(pg_db: PgDatabase) -> str:
    """URL of a fresh, empty database (not migrated): for migration tests."""
    return pg_db.url


@pytest.fixture(scope="session")
def _pg_shared_db(pg_cluster: PgCluster) -> str:
    url = pg_cluster.create_database("shared")
    PostgresStore(url).close()  # migrate once
    return url


@pytest.fixture
def pg_store_url(_pg_shared_db: str) -> str:
    """URL of a migrated database emptied for this test (much faster than a new database).

    Every ``autumn_*`` table but the migration history is truncated before the test; the test
    must close its stores (the contract's ``store`` fixture does).
    """
    with psycopg.connect(_pg_shared_db, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename LIKE 'autumn%%' AND tablename <> %s",
                (schema.MIGRATIONS_TABLE,),
            )
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
    return _pg_shared_db
