"""Fixtures of the dashboard tests: a catalog with every kind of item, engines on each store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autumn_core import (
    INF,
    Autumn,
    Catalog,
    Feature,
    FreeTrial,
    Item,
    ManualClock,
    Price,
    Product,
    Rollover,
    Tier,
)
from autumn_memory import MemoryStore
from autumn_sqlite import SqliteStore

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"


def dashboard_catalog() -> Catalog:
    return Catalog(
        features=[
            Feature.metered("messages", name="Messages", event_names=["chat"]),
            Feature.metered("words", name="Words"),
            Feature.allocated("seats", name="Seats"),
            Feature.boolean("sso", name="SSO"),
        ],
        products=[
            Product(
                "free",
                name="Free",
                default=True,
                items=[Item.feature("messages", included=100, reset="month")],
            ),
            Product(
                "pro",
                name="Pro",
                price=Price(20, interval="month"),
                free_trial=FreeTrial(14, card_required=False),
                items=[
                    Item.feature("sso"),
                    Item.feature(
                        "messages", included=1000, reset="month", rollover=Rollover(max=500)
                    ),
                    Item.priced("messages", price="0.01", billing="usage", max_purchase=5000),
                    Item.priced("seats", included=3, price=10, billing="usage"),
                ],
            ),
            Product(
                "scale",
                name="Scale",
                price=Price(200, interval="year"),
                group="",
                items=[
                    Item.priced(
                        "words",
                        tiers=[Tier(10_000, "0.002"), Tier(INF, "0.001")],
                        billing="usage",
                    )
                ],
            ),
            Product(
                "top_up",
                name="Message pack",
                add_on=True,
                items=[
                    Item.priced(
                        "messages",
                        price=5,
                        billing_units=500,
                        billing="prepaid",
                        interval="one_off",
                    )
                ],
            ),
        ],
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(params=["memory", "sqlite"])
def billing(request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path) -> Iterator[Autumn]:
    store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "billing.db")
    engine = Autumn(dashboard_catalog(), store=store, clock=clock)
    yield engine
    engine.close()
