"""Fixtures for the PostgreSQL tests: one throwaway cluster per test session, one database per test.

The cluster is started by the session itself (``tests/pg_cluster.py``); no test relies on a
server it did not start. If the cluster cannot start, every test that needs it fails with the
reason (a missing binary, a missing ``postgres`` OS user, the server log): never a skip, so a
machine that cannot run PostgreSQL is noticed, not silently under-tested.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from autumn_postgres import PostgresStore
from tests.pg_cluster import PgCluster, empty_autumn_tables

_counter = itertools.count(1)


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

    Every ``autumn_*`` table but the migration history is emptied before the test; the test
    must close its stores (the contract's ``store`` fixture does).
    """
    empty_autumn_tables(_pg_shared_db)
    return _pg_shared_db
