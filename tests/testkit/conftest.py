"""Stores and catalogs for the test kit's own tests.

Every store the machine runs on: memory, SQLite files in a temporary directory, and a database of
a throwaway PostgreSQL cluster started by this session (``tests/pg_cluster.py``; a cluster that
cannot start fails the PostgreSQL runs, it never skips them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autumn_cli.demo import example_catalog
from autumn_core import Catalog
from autumn_core.testing import StoreFactory, fresh_stores
from tests.conftest import reference_catalog
from tests.lifecycle.conftest import FEATURES, base_products
from tests.pg_cluster import PgCluster

STORES = ["memory", "sqlite", "postgresql"]


def catalogs() -> dict[str, Catalog]:
    """The demo's catalog and the catalogs of the acceptance examples."""
    return {
        "demo": example_catalog(),
        "reference": reference_catalog(),
        "lifecycle": Catalog(features=FEATURES, products=base_products()),
    }


@pytest.fixture(scope="session")
def testkit_pg_url() -> Iterator[str]:
    cluster = PgCluster()
    cluster.start()
    try:
        yield cluster.create_database("testkit")
    finally:
        cluster.stop()


@pytest.fixture
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    kind = request.param
    if kind == "memory":
        factory = fresh_stores("memory://")
    elif kind == "sqlite":
        factory = fresh_stores(f"sqlite:///{tmp_path}/machine.db")
    else:
        factory = fresh_stores(request.getfixturevalue("testkit_pg_url"))
    try:
        yield factory
    finally:
        factory.cleanup()
