"""autumn_postgres: the store for engines shared by many processes and hosts, on PostgreSQL.

``PostgresStore("postgresql://user:pw@host:port/db")`` (or a ``psycopg_pool.ConnectionPool``),
or through ``autumn_core.open("postgresql://...")`` / ``"postgres://..."``. Needs the optional
extra ``autumn-embedded[postgres]`` (psycopg 3 and psycopg_pool).
"""

from __future__ import annotations

from typing import Any

from autumn_core.errors import InvalidRequest
from autumn_postgres.store import PostgresStore, RetryableStoreError

_SCHEMES = ("postgresql://", "postgres://")
_OPTIONS = frozenset(
    {"min_size", "max_size", "timeout", "lock_timeout", "statement_timeout", "cache_size"}
)


def store_from_url(url: str, **kwargs: Any) -> PostgresStore:
    """Entry point for ``autumn_core.open("postgresql://...")`` (group ``autumn_core.stores``).

    Keywords are passed to ``PostgresStore`` (``min_size``, ``max_size``, ``timeout``,
    ``lock_timeout``, ``statement_timeout``, ``cache_size``); anything else is refused rather
    than silently ignored.
    """
    if not isinstance(url, str) or not url.startswith(_SCHEMES):
        raise InvalidRequest(f"not a PostgreSQL URL: {url!r} (expected postgresql://...)")
    unknown = sorted(set(kwargs) - _OPTIONS)
    if unknown:
        raise InvalidRequest(f"unknown PostgresStore options: {', '.join(unknown)}")
    return PostgresStore(url, **kwargs)


__all__ = ["PostgresStore", "RetryableStoreError", "store_from_url"]
