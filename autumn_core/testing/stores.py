"""Fresh, empty stores for tests: one per test or per generated example.

Stores are opened through the ``autumn_core.stores`` entry points by URL, like ``autumn_core.open``
does, so this module imports no adapter.

- ``memory://``: a new in-memory store every time.
- ``sqlite:///path.db`` / ``sqlite:////abs/path.db``: a new file every time, next to ``path.db``
  (``path-1.db``, ``path-2.db``, ...); each is deleted when the next one is made and on
  ``cleanup()``. ``sqlite://`` alone means files in a temporary directory.
- ``postgresql://...``: a *scratch* database. Before every store every customer and pending plan
  is deleted through the store port, so it refuses a database holding customers it did not put
  there (see ``claim``). Fingerprint trial claims and processed provider event ids outlive a
  customer by design (C10, W1): use new fingerprints per test (machines do, see ``namespace``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from autumn_core.app.attach import CHECKOUT
from autumn_core.app.billing import OPERATION
from autumn_core.clock import SystemClock
from autumn_core.errors import InvalidRequest
from autumn_core.facade import _store_factory
from autumn_core.model import PendingRecord
from autumn_core.ports import Gateway, Store

#: The record a scratch PostgreSQL database carries once the test kit has emptied it.
SCRATCH_RECORD = "testkit.scratch"


class StoreFactory:
    """A callable returning a fresh, empty store; ``cleanup()`` removes what it made."""

    def __init__(self, url: str, make: Callable[[], Store], cleanup: Callable[[], None]) -> None:
        self.url = url
        #: Appended to the fingerprints a machine uses on the current store: empty for stores
        #: that start empty, a new value per store where old trial claims survive.
        self.namespace = ""
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
    counter = itertools.count(1)
    factory: StoreFactory

    def make() -> Store:
        store = _open(url)  # migrates an empty database
        try:
            claim(store, url)
            empty(store)
            with store.transaction() as tx:
                tx.put_pending(
                    PendingRecord(SCRATCH_RECORD, "", SCRATCH_RECORD, {}, SystemClock().now())
                )
        except BaseException:
            store.close()
            raise
        factory.namespace = f".{next(counter)}"
        return store

    factory = StoreFactory(url, make, lambda: None)
    return factory


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


def empty(store: Store) -> None:
    """Delete every customer (everything under it goes too, C10) and every pending plan,
    through the store port. Fingerprint trial claims survive by design (C10): the factory's
    ``namespace`` changes with every store so that fingerprints never meet old claims."""
    while True:
        with store.transaction(write=False) as tx:
            page = tx.list_customers(limit=500, starting_after=None, email=None)
        if not page:
            break
        for state in page:
            with store.transaction() as tx:
                tx.delete_customer(state.pk)
    with store.transaction() as tx:
        for kind in (CHECKOUT, OPERATION):
            for record in tx.list_pending(kind):
                tx.delete_pending(record.key)


def gateway_factory(name: str) -> Callable[..., Gateway]:
    """The payment provider registered under ``name`` in the ``autumn_core.gateways`` entry
    points (``memory``: ``MemoryGateway``), found like stores are, so the kit imports none."""
    for ep in entry_points(group="autumn_core.gateways"):
        if ep.name == name:
            factory: Callable[..., Gateway] = ep.load()
            return factory
    raise InvalidRequest(f"no payment provider is registered as {name!r}")
