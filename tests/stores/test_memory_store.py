"""MemoryStore, the reference implementation, through the whole Store contract."""

from __future__ import annotations

from autumn_core.ports import Store
from autumn_core.testing.contract import StoreContract
from autumn_memory import MemoryStore


class TestMemoryStore(StoreContract):
    def make_store(self) -> Store:
        return MemoryStore()
