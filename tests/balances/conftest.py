"""A catalog for the facade-level balance tests (DOMAIN.md §19 fixtures, free products only).

Usage-billed rows come from ``Item.priced(..., price=0)``: the product stays free, so it
attaches without the payment lifecycle, and its rows behave exactly like priced ones for
balances (overage allowed, floors at -max_purchase).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from autumn_core import Autumn, Catalog, Feature, Item, ManualClock, Product
from tests.conftest import StoreFactory

T0 = datetime(2025, 1, 31, 10, 0, tzinfo=UTC)


def monthly(n: int, feature: str = "messages", **kw: Any) -> Item:
    return Item.feature(feature, included=n, reset="month", **kw)


def usage_item(feature: str = "messages", **kw: Any) -> Item:
    return Item.priced(feature, price=0, billing="usage", **kw)


def balances_catalog() -> Catalog:
    return Catalog(
        features=[
            Feature.metered("messages", event_names=["chat"]),
            Feature.metered("words"),
            Feature.metered("action1", event_names=["action-event"]),
            Feature.metered("action3", event_names=["action-event"]),
            Feature.metered("images"),
            Feature.metered("search"),
            Feature.allocated("users"),
            Feature.boolean("dashboard"),
            Feature.credit_system("credits", costs={"action1": 1, "words": "2.5"}),
            Feature.credit_system("image_credits", costs={"images": 4}),
            Feature.credit_system("search_credits", costs={"search": "0.5"}),
        ],
        products=[
            Product("free", items=[Item.feature("dashboard"), monthly(1000)]),
            Product("m100", items=[monthly(100)]),
            Product("m10", items=[monthly(10)]),
            Product("m200", items=[monthly(200)]),
            Product("m300", items=[monthly(300)]),
            Product("m500", items=[monthly(500)]),
            Product("once200", add_on=True, items=[Item.feature("messages", included=200)]),
            Product("overage500", add_on=True, items=[usage_item(included=500)]),
            Product("k6", add_on=True, items=[usage_item(included=50, max_purchase=150)]),
            Product("seats5", group="seats", items=[Item.feature("users", included=5)]),
            Product(
                "paidseats",
                group="seats",
                items=[usage_item("users", included=1, max_purchase=2)],
            ),
            Product(
                "actions", add_on=True, items=[monthly(200, "action1"), monthly(150, "action3")]
            ),
            Product("credits100", add_on=True, items=[monthly(100, "credits")]),
            Product("images8", add_on=True, items=[monthly(8, "images")]),
            Product("image_credits50", add_on=True, items=[monthly(50, "image_credits")]),
            Product("search10", add_on=True, items=[monthly(10, "search")]),
            Product("search_credits100", add_on=True, items=[monthly(100, "search_credits")]),
            Product("unlimited_words", add_on=True, items=[Item.feature("words", unlimited=True)]),
            Product("per_seat", add_on=True, items=[monthly(40, per_entity="users")]),
        ],
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def make_billing(clock: ManualClock, new_store: StoreFactory) -> Callable[..., Autumn]:
    """An engine on a fresh store of the test's kind (every store: tests/conftest.py)."""

    def make(**kw: Any) -> Autumn:
        return Autumn(balances_catalog(), store=new_store(), clock=clock, **kw)

    return make


@pytest.fixture
def billing(make_billing: Callable[..., Autumn]) -> Autumn:
    return make_billing()
