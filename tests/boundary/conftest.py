"""The engines of ``tests/seats`` (memory, a SQLite file, the throwaway PostgreSQL cluster)."""

from tests.seats import conftest as _seats
from tests.seats.conftest import (
    clock,
    core_pg_url,
    make,
    new_store,
    second_store,
    store_kind,
)

__all__ = [
    "clock",
    "core_pg_url",
    "make",
    "new_store",
    "second_store",
    "store_kind",
]

if hasattr(_seats, "pg_cluster"):
    pg_cluster = _seats.pg_cluster
