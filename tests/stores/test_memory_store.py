"""MemoryStore, the reference implementation, through the whole Store contract."""

from __future__ import annotations

from autumn_core.ports import Store
from autumn_memory import MemoryStore
from tests.contract.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    def make_store(self) -> Store:
        return MemoryStore()
