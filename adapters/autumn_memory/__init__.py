"""autumn_memory: the in-process store and payment provider."""

from __future__ import annotations

from typing import Any

from autumn_memory.store import MemoryStore


def store_from_url(url: str, **_: Any) -> MemoryStore:
    """Entry point for ``autumn_core.open("memory://")``."""
    return MemoryStore()


def __getattr__(name: str) -> Any:
    # The gateway is imported lazily so the store works before the lifecycle layer exists.
    if name == "MemoryGateway":
        from autumn_memory.gateway import MemoryGateway

        return MemoryGateway
    raise AttributeError(name)


__all__ = ["MemoryGateway", "MemoryStore", "store_from_url"]
