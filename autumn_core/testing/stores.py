"""Fresh, empty stores for tests: one per test or per generated example.

Stores are opened through the ``autumn_core.stores`` entry points by URL, like ``autumn_core.open``
does, so this module imports no adapter.

- ``memory://``: a new in-memory store every time.
- ``sqlite:///path.db`` / ``sqlite:////abs/path.db``: a new file every time, next to ``path.db``
  (``path-1.db``, ``path-2.db``, ...); each is deleted when the next one is made and on
  ``cleanup()``. ``sqlite://`` alone means files in a temporary directory.
- ``postgresql://...``: a *scratch* database. Before every store its ``autumn_*`` tables are
  emptied, so it refuses a database holding customers it did not create (see ``claim``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from autumn_core.errors import InvalidRequest
from autumn_core.facade import _store_factory
from autumn_core.model import PendingRecord
from autumn_core.ports import Store

#: The record a scratch PostgreSQL database carries once the test kit has emptied it.
SCRATCH_RECORD = "testkit.scratch"


class StoreFactory:
    """A callable returning a fresh, empty store; ``cleanup()`` removes what it made."""

    def __init__(self, url: str, make: Callable[[], Store], cleanup: Callable[[], None]) -> None:
        self.url = url
        self._make = make
        self._cleanup = cleanup

    def __call__(self) -> Store:
        return self._make()

    def cleanup(self) -> None:
        self._cleanup()

    def __repr__(self) -> str:
        return f"StoreFactory({self.url!r})"


def _open(url: str, **kwargs: Any) -> Store:
    return _store_factory(url.split("://", 1)[0])(url, **kwargs)


def fresh_stores(url: str = "memory://") -> StoreFactory:
    """A factory of fresh, empty stores for ``url`` (see the module docstring)."""
    if not isinstance(url, str) or "://" not in url:
        raise InvalidRequest(f"store URL must look like scheme://..., got {url!r}")
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return StoreFactory(url, lambda: _open(url), lambda: None)
    if scheme == "sqlite":
        return _sqlite_stores(url)
    if scheme in ("postgresql", "postgres"):
        return _postgres_stores(url)
    _store_factory(scheme)  # an unknown scheme is refused here, not at the first example
    raise InvalidRequest(
        f"the test kit cannot empty a {scheme!r} store between examples; pass a "
        "store_factory that returns a fresh, empty store"
    )


def _sqlite_stores(url: str) -> StoreFactory:
    rest = url[len("sqlite://") :]
    tmp: str | None = None
    if rest in ("", "/"):
        tmp = tempfile.mkdtemp(prefix="autumn-testkit-")
        base = os.path.join(tmp, "store.db")
    elif rest.startswith("/") and rest not in (":memory:", "/:memory:"):
        base = rest[1:]
    else:
        raise InvalidRequest(
            f"give the test kit a sqlite file URL (sqlite:///path.db), not {url!r}"
        )
    stem, ext = os.path.splitext(base)
    counter = itertools.count(1)
    made: list[str] = []

    def remove() -> None:
        while made:
            path = made.pop()
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)

    def make() -> Store:
        remove()
        path = f"{stem}-{next(counter)}{ext or '.db'}"
        if os.path.exists(path):
            raise InvalidRequest(f"{path} exists; the test kit only writes files it creates")
        made.append(path)
        return _open("sqlite:///" + path)

    def cleanup() -> None:
        remove()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    return StoreFactory(url, make, cleanup)


def _postgres_stores(url: str) -> StoreFactory:
    checked = False

    def make() -> Store:
        nonlocal checked
        if not checked:
            store = _open(url)  # migrates an empty database
            try:
                claim(store, url)
            finally:
                store.close()
            checked = True
        _empty_postgres(url)
        store = _open(url)
        with store.transaction() as tx:
            tx.put_pending(PendingRecord(SCRATCH_RECORD, "", SCRATCH_RECORD, {}, datetime.now(UTC)))
        return store

    return StoreFactory(url, make, lambda: None)


def claim(store: Store, url: str) -> None:
    """Refuse a database that holds customers the test kit did not put there."""
    with store.transaction(write=False) as tx:
        if tx.get_pending(SCRATCH_RECORD) is not None:
            return
        if tx.list_customers(limit=1, starting_after=None, email=None):
            raise InvalidRequest(
                f"{url} holds customers; the test kit empties its store before every example, "
                "so give it a scratch database"
            )


def _empty_postgres(url: str) -> None:
    # The driver is imported only when a PostgreSQL URL is given (the postgres extra).
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename LIKE 'autumn%%' AND tablename NOT LIKE '%%migration%%'"
            )
        ]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
