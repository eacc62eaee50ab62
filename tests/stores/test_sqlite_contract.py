"""SqliteStore through the whole Store contract, on a real file and on ``:memory:``."""

from __future__ import annotations

from autumn_core.ports import Store
from autumn_core.testing.contract import StoreContract
from autumn_sqlite import SqliteStore


class TestSqliteFileStore(StoreContract):
    """A database file on disk: durable and shared by processes."""

    def make_store(self) -> Store:
        return SqliteStore(self.tmp_path / "contract.db")

    def reopen_store(self) -> Store:
        return SqliteStore(self.tmp_path / "contract.db")


class TestSqliteMemoryStore(StoreContract):
    """``sqlite://:memory:``: one private database, neither durable nor multi-process."""

    def make_store(self) -> Store:
        return SqliteStore(":memory:")


class TestSqliteUncachedStore(StoreContract):
    """No parsed-customer cache: every load reads the rows, so the contract checks what the
    store actually wrote (with the cache, a load right after a save is served from memory)."""

    def make_store(self) -> Store:
        return SqliteStore(self.tmp_path / "contract.db", cache_size=0)

    def reopen_store(self) -> Store:
        return SqliteStore(self.tmp_path / "contract.db", cache_size=0)
