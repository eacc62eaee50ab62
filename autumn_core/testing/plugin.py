"""The pytest plugin of ``autumn_core`` (entry point ``pytest11``: installing the package is enough).

Fixtures
    ``autumn_clock``: a ``ManualClock`` at ``autumn_core.testing.START``.
    ``autumn_gateway``: a ``MemoryGateway`` (a card on file).
    ``autumn_store``: a fresh, empty store (``memory://`` unless the test is marked).
    ``autumn_billing``: an ``Autumn`` on ``autumn_catalog``, ``autumn_store``,
    ``autumn_gateway`` and ``autumn_clock``. Define ``autumn_catalog`` in your conftest.
Marker
    ``@pytest.mark.autumn_every_store`` runs the test once per installed store: memory, a
    SQLite file, and PostgreSQL when ``AUTUMN_TEST_POSTGRES_URL`` names a scratch database
    (the plugin never starts a server; its customers are deleted before each test, while
    fingerprint trial claims and provider event ids outlive them by design: C10, W1).

Stores are opened through the ``autumn_core.stores`` entry points, like ``autumn_core.open``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

import pytest

from autumn_core.catalog import Catalog
from autumn_core.clock import ManualClock
from autumn_core.facade import Autumn
from autumn_core.ports import Gateway, Store

POSTGRES_URL_VARIABLE = "AUTUMN_TEST_POSTGRES_URL"
MARKER = "autumn_every_store"


def installed_stores() -> list[str]:
    """The stores a marked test runs on: those installed, PostgreSQL only with a URL."""
    schemes = {ep.name for ep in entry_points(group="autumn_core.stores")}
    kinds: list[str] = [k for k in ("memory", "sqlite") if k in schemes]
    if os.environ.get(POSTGRES_URL_VARIABLE) and "postgresql" in schemes:
        kinds.append("postgresql")
    return kinds


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: run the test on every installed store (memory, SQLite file, and "
        f"PostgreSQL when {POSTGRES_URL_VARIABLE} is set)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker(MARKER) is None:
        return
    if "autumn_store" not in metafunc.fixturenames:
        return
    kinds = installed_stores()
    metafunc.parametrize("autumn_store_kind", kinds, ids=kinds)


@pytest.fixture
def autumn_store_kind() -> str:
    """Which store ``autumn_store`` opens; parametrised by the ``autumn_every_store`` marker."""
    return "memory"


@pytest.fixture
def autumn_store(autumn_store_kind: str, tmp_path: Any) -> Iterator[Store]:
    from autumn_core.testing.stores import fresh_stores

    if autumn_store_kind == "memory":
        factory = fresh_stores("memory://")
    elif autumn_store_kind == "sqlite":
        factory = fresh_stores(f"sqlite:///{tmp_path}/billing.db")
    else:
        factory = fresh_stores(os.environ[POSTGRES_URL_VARIABLE])
    store = factory()
    try:
        yield store
    finally:
        store.close()
        factory.cleanup()


@pytest.fixture
def autumn_clock() -> ManualClock:
    from autumn_core.testing.machine import START

    return ManualClock(START)


@pytest.fixture
def autumn_gateway(autumn_clock: ManualClock) -> Gateway:
    # The in-process provider lives in the autumn_memory adapter, found by entry point.
    from autumn_core.testing.stores import gateway_factory

    return gateway_factory("memory")(clock=autumn_clock)


@pytest.fixture
def autumn_catalog() -> Catalog:
    raise pytest.UsageError(
        "define an autumn_catalog fixture (your Catalog) in conftest.py to use autumn_billing"
    )


@pytest.fixture
def autumn_billing(
    autumn_catalog: Catalog,
    autumn_store: Store,
    autumn_gateway: Gateway,
    autumn_clock: ManualClock,
) -> Iterator[Autumn]:
    billing = Autumn(autumn_catalog, store=autumn_store, gateway=autumn_gateway, clock=autumn_clock)
    yield billing
