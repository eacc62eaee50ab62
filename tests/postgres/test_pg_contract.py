"""PostgresStore through the whole shared Store contract (``autumn_core.testing.contract``)."""

from __future__ import annotations

import pytest

from autumn_core.ports import Store
from autumn_core.testing.contract import StoreContract
from autumn_postgres import PostgresStore

pytestmark = pytest.mark.postgres


class TestPostgresStore(StoreContract):
    """A fresh database per test; ``reopen_store`` is a second store (own pool) on it."""

    @pytest.fixture(autouse=True)
    def _database(self, pg_store_url: str) -> None:
        self.url = pg_store_url

    def make_store(self) -> Store:
        return PostgresStore(self.url)

    def reopen_store(self) -> Store:
        return PostgresStore(self.url)


class TestPostgresUncachedStore(StoreContract):
    """No parsed-customer cache: every load reads the rows, so the contract checks what the
    store actually wrote (with the cache, a load right after a save is served from memory)."""

    @pytest.fixture(autouse=True)
    def _database(self, pg_store_url: str) -> None:
        self.url = pg_store_url

    def make_store(self) -> Store:
        return PostgresStore(self.url, cache_size=0)

    def reopen_store(self) -> Store:
        return PostgresStore(self.url, cache_size=0)


class TestPostgresUnpipelinedStore(StoreContract):
    """``pipeline=False``: every statement of a write is its own round trip (the fallback for
    proxies without pipelining); the contract must hold the same."""

    @pytest.fixture(autouse=True)
    def _database(self, pg_store_url: str) -> None:
        self.url = pg_store_url

    def make_store(self) -> Store:
        return PostgresStore(self.url, pipeline=False)

    def reopen_store(self) -> Store:
        return PostgresStore(self.url, pipeline=False)
