"""Fixtures of the billing-controls tests: a catalog with usage-billed, prepaid and credit
features, and a way to read a store back through a fresh store object (what is on disk)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from autumn_core import Autumn, Catalog, Feature, Item, ManualClock, Price, Product
from autumn_core.ports import Store
from tests.conftest import StoreFactory


def controls_catalog() -> Catalog:
    return Catalog(
        features=[
            Feature.metered("messages", event_names=["chat"]),
            Feature.metered("tokens"),
            Feature.metered("api_calls"),
            Feature.allocated("seats"),
            Feature.boolean("sso"),
        ],
        products=[
            Product(
                "free",
                default=True,
                items=[
                    Item.feature("messages", included=100, reset="month"),
                    Item.feature("tokens", included=1000, reset="month"),
                    Item.feature("seats", included=10),
                ],
            ),
            Product(
                "payg",
                add_on=True,
                price=Price(0, interval="month"),
                items=[
                    Item.feature("api_calls", included=100, reset="month"),
                    Item.priced("api_calls", price="0.01", billing="usage"),
                ],
            ),
        ],
    )


@pytest.fixture
def billing(clock: ManualClock, new_store: StoreFactory) -> Autumn:
    return Autumn(controls_catalog(), store=new_store(), clock=clock)


@pytest.fixture
def reopen(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``reopen(billing)``: an engine on a new store object over the same data."""
    opened: list[Store] = []

    def make(billing: Autumn) -> Autumn:
        store: Any = billing.store
        new: Store
        if type(store).__name__ == "SqliteStore":
            from autumn_sqlite import SqliteStore

            new = SqliteStore(store.path)
        elif type(store).__name__ == "PostgresStore":
            from autumn_postgres import PostgresStore

            new = PostgresStore(request.getfixturevalue("pg_databases")._urls[0], max_size=2)
        else:
            return billing
        opened.append(new)
        return Autumn(billing.catalog, store=new, clock=billing.clock)

    yield make
    for store in opened:
        store.close()
