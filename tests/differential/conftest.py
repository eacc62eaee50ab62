"""The PostgreSQL fixtures of ``tests/postgres`` (on the session's throwaway cluster), reused here."""

from tests.postgres.conftest import _pg_shared_db, pg_store_url

__all__ = ["_pg_shared_db", "pg_store_url"]
