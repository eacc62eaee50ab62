"""The PostgreSQL fixtures of ``tests/postgres`` (the session's throwaway cluster), reused here."""

from tests.postgres.conftest import _pg_shared_db, pg_cluster, pg_store_url

__all__ = ["_pg_shared_db", "pg_cluster", "pg_store_url"]
