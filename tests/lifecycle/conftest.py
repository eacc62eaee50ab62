"""Fixtures of DOMAIN.md §19 for the lifecycle: an engine on MemoryStore + MemoryGateway with a
ManualClock at 2025-04-01 09:00Z (April has 30 days, so "day 15 of 30" is exact)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import (
    Autumn,
    Catalog,
    Feature,
    FreeTrial,
    Item,
    ManualClock,
    Price,
    Product,
)
from autumn_memory import MemoryGateway, MemoryStore

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
D = Decimal

FEATURES = [
    Feature.metered("messages"),
    Feature.metered("words"),
    Feature.allocated("users"),
    Feature.allocated("seats"),
    Feature.boolean("dashboard"),
    Feature.metered("credits"),
    Feature.metered("exports"),
]


def msgs(n: int) -> Item:
    """ "N monthly messages" of §19."""
    return Item.feature("messages", included=n, reset="month")


def base_products() -> list[Product]:
    return [
        Product("free", name="Free", default=True, items=[Item.feature("dashboard"), msgs(100)]),
        Product("pro", name="Pro", price=Price(20), items=[msgs(500)]),
        Product("premium", name="Premium", price=Price(50), items=[msgs(1000)]),
        Product("ultra", name="Ultra", price=Price(200), items=[msgs(5000)]),
        Product("pro-trial", price=Price(20), free_trial=FreeTrial(7), items=[msgs(500)]),
        Product("premium-trial", price=Price(50), free_trial=FreeTrial(14), items=[msgs(1000)]),
        Product("boost", add_on=True, items=[Item.feature("words", included=150)]),
        Product(
            "pack",
            price=Price(15, interval="one_off"),
            items=[Item.feature("messages", included=50)],
        ),
        Product(
            "addon20", add_on=True, price=Price(20), items=[Item.feature("words", included=10)]
        ),
        Product(
            "addon20-trial",
            add_on=True,
            price=Price(20),
            free_trial=FreeTrial(5),
            items=[Item.feature("words", included=10)],
        ),
    ]


Factory = Callable[..., Autumn]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def gateway() -> MemoryGateway:
    return MemoryGateway()


@pytest.fixture
def make(clock: ManualClock, gateway: MemoryGateway) -> Factory:
    """make(products=None, *, gateway=<the fixture's>, extra_features=()) -> Autumn."""

    def build(
        products: Iterable[Product] | None = None,
        *,
        gateway: Any = gateway,
        features: Iterable[Feature] = FEATURES,
        **kwargs: Any,
    ) -> Autumn:
        catalog = Catalog(features=list(features), products=list(products or base_products()))
        return Autumn(catalog, store=MemoryStore(), gateway=gateway, clock=clock, **kwargs)

    return build


@pytest.fixture
def billing(make: Factory) -> Autumn:
    return make()


def statuses(billing: Autumn, cid: str = "c") -> dict[str, str]:
    return {p.id: p.status for p in billing.customers.get(cid).products}


def totals(billing: Autumn, cid: str = "c") -> list[Decimal]:
    """The invoice totals once what is due by now is billed (by ``process_due``, a write:
    reading invoices bills nothing)."""
    billing.process_due()
    return [i.total for i in billing.invoices.list(cid)]
