"""Code run in spawned child processes by the PostgreSQL tests (light to import under spawn)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from typing import Any

from autumn_core.errors import AutumnError
from autumn_postgres import PostgresStore


def open_store(url: str, start: Barrier, out: Any) -> None:
    """Open (and so migrate) a store at the same moment as the siblings; report the error."""
    start.wait()
    try:
        store = PostgresStore(url)
        store.close()
    except AutumnError as exc:  # pragma: no cover - reported to the parent
        out.put(repr(exc))
        return
    out.put(None)
