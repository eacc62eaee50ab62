"""The PostgreSQL fixtures of ``tests/postgres``, on a database of this suite's own in the
session's throwaway cluster (``tests/postgres`` owns the one named ``shared``)."""

import pytest

from autumn_postgres import PostgresStore
from tests.pg_cluster import PgCluster
from tests.postgres.conftest import pg_store_url

__all__ = ["_pg_shared_db", "pg_store_url"]


@pytest.fixture(scope="session")
def _pg_shared_db(pg_cluster: PgCluster) -> str:
    url = pg_cluster.create_database("differential")
    PostgresStore(url).close()  # migrate once
    return url
