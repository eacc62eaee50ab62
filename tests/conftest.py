"""Shared fixtures: a reference catalog and an engine on the in-memory store at a fixed instant."""

from __future__ import annotations

from datetime import UTC, datetime

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
from autumn_memory import MemoryStore

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


def reference_catalog() -> Catalog:
    """The fixtures of DOMAIN.md §19, trimmed to what the foundation tests use."""
    return Catalog(
        features=[
            Feature.metered("messages", name="Messages", event_names=["chat"]),
            Feature.metered("words"),
            Feature.metered("action1", event_names=["action-event"]),
            Feature.metered("action3", event_names=["action-event"]),
            Feature.allocated("users"),
            Feature.boolean("dashboard"),
            Feature.credit_system("credits", costs={"action1": 1, "words": "2.5"}),
        ],
        products=[
            Product(
                "free",
                name="Free",
                default=True,
                items=[
                    Item.feature("dashboard"),
                    Item.feature("messages", included=1000, reset="month"),
                ],
            ),
            Product("seats5", group="seats", items=[Item.feature("users", included=5)]),
            Product(
                "actions",
                add_on=True,
                items=[
                    Item.feature("action1", included=200, reset="month"),
                    Item.feature("action3", included=150, reset="month"),
                ],
            ),
            Product(
                "credits100",
                add_on=True,
                items=[Item.feature("credits", included=100, reset="month")],
            ),
            Product("unlimited", add_on=True, items=[Item.feature("words", unlimited=True)]),
            Product(
                "pro",
                price=Price(20),
                free_trial=FreeTrial(14, card_required=False),
                items=[Item.feature("messages", included=5000, reset="month")],
            ),
        ],
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def billing(clock: ManualClock) -> Autumn:
    return Autumn(reference_catalog(), store=MemoryStore(), clock=clock)
