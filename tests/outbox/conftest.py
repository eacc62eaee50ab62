"""An engine on each store with MemoryGateway and a ManualClock, and the catalog of the
events-out tests: a free default, paid plans (one with a card-less trial)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import Autumn, Catalog, Feature, FreeTrial, Item, ManualClock, Price, Product
from autumn_core.outbound import OutboundEvent
from autumn_memory import MemoryGateway
from tests.conftest import StoreFactory

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages")],
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
                price=Price(20),
                items=[Item.feature("messages", included=500, reset="month")],
            ),
            Product(
                "premium",
                name="Premium",
                price=Price(50),
                items=[Item.feature("messages", included=1000, reset="month")],
            ),
            Product(
                "trial",
                name="Trial",
                price=Price(30),
                free_trial=FreeTrial(14, card_required=False),
                items=[Item.feature("messages", included=700, reset="month")],
            ),
        ],
    )


Make = Callable[..., Autumn]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def gateway() -> MemoryGateway:
    return MemoryGateway()


@pytest.fixture
def make(new_store: StoreFactory, clock: ManualClock, gateway: MemoryGateway) -> Make:
    def build(**kwargs: Any) -> Autumn:
        kwargs.setdefault("gateway", gateway)
        return Autumn(
            catalog(), store=kwargs.pop("store", None) or new_store(), clock=clock, **kwargs
        )

    return build


@pytest.fixture
def billing(make: Make) -> Autumn:
    return make()


def outbox(billing: Autumn, **kw: Any) -> list[OutboundEvent]:
    return [entry.event for entry in billing.webhooks.list(**kw)]


def summary(events: list[OutboundEvent]) -> list[tuple[str, ...]]:
    """(type, customer, scenario or reason, product or total) of each event, in order."""
    out: list[tuple[str, ...]] = []
    for e in events:
        if e.type == "customer.products.updated":
            out.append(
                (e.type, str(e.customer_id), e.data["scenario"], e.data["updated_product"]["id"])
            )
        elif e.type.startswith("invoice."):
            out.append(
                (
                    e.type,
                    str(e.customer_id),
                    e.data["reason"],
                    f"{Decimal(str(e.data['invoice']['total'])):.2f}",
                )
            )
        else:
            out.append((e.type, str(e.customer_id)))
    return out
