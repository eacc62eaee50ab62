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

from tests.pg_cluster import PgCluster

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's cluster (fsync off, loopback, free port); removed at the end."""
    cluster = PgCluster(max_connections=300)
    cluster.start()  # raises ClusterError (a test error, not a skip) when it cannot start
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
    return pg_db.url
