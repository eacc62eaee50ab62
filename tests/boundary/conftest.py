"""The engines of ``tests/seats`` (memory, a SQLite file, the throwaway PostgreSQL cluster)."""

from tests.seats import conftest as _seats
from tests.seats.conftest import (
    _pg_shared_db,
    clock,
    make,
    new_store,
    pg_store_url,
    second_store,
    store_kind,
)

__all__ = [
    "_pg_shared_db",
    "clock",
    "make",
    "new_store",
    "pg_store_url",
    "second_store",
    "store_kind",
]

if hasattr(_seats, "pg_cluster"):
    pg_cluster = _seats.pg_cluster
