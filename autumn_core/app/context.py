"""What every use case needs: the catalog with its versions, the ports, options and ids."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from decimal import Decimal, getcontext, setcontext
from typing import Any, TypeVar

import attrs

from autumn_core.catalog import Catalog, Product
from autumn_core.clock import Clock
from autumn_core.errors import InvalidRequest, StoreError, UniqueViolation
from autumn_core.model import ProductVersionRecord
from autumn_core.ports import Gateway, Store, StoreTransaction
from autumn_core.serialization import converter
from autumn_core.values import engine_context

T = TypeVar("T")

#: How often a use case is re-run after a retryable store failure or a lost uniqueness race.
MAX_ATTEMPTS = 8
#: The first wait after a retryable failure, in seconds (doubled after each, up to 0.1 s).
_FIRST_DELAY = 0.001


@attrs.frozen
class Options:
    """Fields of ``options=`` on ``Autumn`` (docs/rules.md 2.1)."""

    include_past_due: bool = True
    reverse_deduction_order: bool = False
    persist_free_overage: bool = False
    allow_paid_default: bool = False
    currency: str = "usd"

    @classmethod
    def coerce(cls, value: Any) -> Options:
        if value is None:
            return cls()
        if isinstance(value, Options):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {f.name for f in attrs.fields(cls)}
            if unknown:
                raise InvalidRequest(f"unknown options: {sorted(unknown)}")
            return cls(**value)
        raise InvalidRequest(f"options must be a dict or Options, got {value!r}")


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(10).hex()}"


class Registry:
    """Every stored version of every product; the catalog's products are the latest ones."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.feature_types: dict[str, str] = {f.id: f.type for f in catalog.features}
        self.versions: dict[tuple[str, int], Product] = {}
        self.latest: dict[str, int] = {}
        #: When each (product id, version) was first stored.
        self.created_at: dict[tuple[str, int], datetime] = {}

    def product(self, product_id: str, version: int | None = None) -> Product | None:
        if version is None:
            version = self.latest.get(product_id)
            if version is None:
                return None
        return self.versions.get((product_id, version))

    def version_numbers(self, product_id: str) -> list[int]:
        """The stored versions of a product, oldest first."""
        return sorted(v for (pid, v) in self.versions if pid == product_id)

    def sync(self, tx: StoreTransaction, now: Any) -> None:
        """Store the catalog's products, versioning those whose definition changed while held."""
        stored: dict[str, list[ProductVersionRecord]] = {}
        for rec in tx.load_product_versions():
            stored.setdefault(rec.product_id, []).append(rec)
        for recs in stored.values():
            for rec in recs:
                self.versions[(rec.product_id, rec.version)] = converter.structure(
                    json.loads(rec.definition), Product
                )
                self.created_at[(rec.product_id, rec.version)] = rec.created_at
        for product in self.catalog.products:
            definition = json.dumps(converter.unstructure(product), sort_keys=True)
            recs = sorted(stored.get(product.id, []), key=lambda r: r.version)
            if not recs:
                version = 1
            else:
                last = recs[-1]
                if last.definition == definition:
                    self.latest[product.id] = last.version
                    self.versions[(product.id, last.version)] = product
                    continue
                in_use = tx.product_version_in_use(product.id, last.version)
                version = last.version + 1 if in_use else last.version
            tx.save_product_version(ProductVersionRecord(product.id, version, definition, now))
            self.versions[(product.id, version)] = product
            self.created_at[(product.id, version)] = now
            self.latest[product.id] = version


def _in_engine(fn: Callable[[StoreTransaction], T], tx: StoreTransaction) -> T:
    setcontext(engine_context())
    return fn(tx)


class Context:
    """The ports and settings shared by every use case of one ``Autumn``."""

    def __init__(
        self,
        catalog: Catalog,
        store: Store,
        gateway: Gateway | None,
        clock: Clock,
        options: Options,
        auto_create_customers: bool,
    ) -> None:
        self.catalog = catalog
        self.registry = Registry(catalog)
        self.store = store
        self.gateway = gateway
        self.clock = clock
        self.options = options
        self.auto_create = auto_create_customers
        #: feature id -> the credit systems listing it, with its cost in each (the catalog is
        #: immutable, so this is computed once per feature on first use).
        self.pool_costs: dict[str, dict[str, Decimal]] = {}
        self._optimistic: Callable[[], AbstractContextManager[StoreTransaction]] | None = getattr(
            store, "optimistic_transaction", None
        )
        self._combined: Callable[[Callable[[StoreTransaction], Any]], Any] | None = getattr(
            store, "run_write", None
        )

    def run(
        self,
        fn: Callable[[StoreTransaction], T],
        *,
        write: bool = True,
        optimistic: bool = False,
    ) -> T:
        """Run ``fn`` in one transaction, re-running it after a lost race or a retryable failure.

        A lost uniqueness race (two creates of one customer, two uses of one idempotency key)
        is resolved by running again: the second run reads the winner's row. ``optimistic``: a
        store that offers it (``ports.OptimisticStore``) runs the first attempt without
        locking the customer; if another save came first, the call runs again at once, the
        usual way (locking), so it always ends. A store that groups writes
        (``ports.CombiningStore``) runs the first attempt of any other write itself.
        """
        opener = self._optimistic if optimistic and write else None
        # The engine's Decimal context for the whole call (``values.arithmetic``), set here
        # without a context manager object: this runs on every call.
        caller = getcontext()
        setcontext(engine_context())
        try:
            # The first attempt is written out: it is the only one almost every call makes.
            try:
                if opener is None and write and self._combined is not None:
                    # A store that groups the writes of many threads runs this one itself,
                    # maybe on another thread: in this thread's context, with the Decimal
                    # context of the thread that runs it (``values.in_engine``).
                    result: T = self._combined(lambda tx: _in_engine(fn, tx))
                    return result
                with opener() if opener is not None else self.store.transaction(write=write) as tx:
                    return fn(tx)
            except StoreError as exc:
                if not (exc.retryable or isinstance(exc, UniqueViolation)):
                    raise
                if opener is None and not isinstance(exc, UniqueViolation):
                    time.sleep(_FIRST_DELAY * (1 + random.random()))
            return self._again(fn, write)
        finally:
            setcontext(caller)

    def _again(self, fn: Callable[[StoreTransaction], T], write: bool) -> T:
        """The attempts after the first (``run``), each in a locking transaction."""
        delay = _FIRST_DELAY * 2
        for attempt in range(1, MAX_ATTEMPTS):
            try:
                with self.store.transaction(write=write) as tx:
                    return fn(tx)
            except UniqueViolation:
                if attempt == MAX_ATTEMPTS - 1:
                    raise StoreError("a uniqueness race did not settle") from None
            except StoreError as exc:
                if not exc.retryable or attempt == MAX_ATTEMPTS - 1:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.1)
        raise StoreError("unreachable")  # pragma: no cover
