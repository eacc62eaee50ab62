"""Fixtures of the dashboard tests: a catalog with every kind of item, engines on each store."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


_databases = itertools.count(1)


@pytest.fixture(scope="session")
def dashboard_pg_cluster() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster (tests/pg_cluster.py), started only if a test needs it."""
    from tests.pg_cluster import PgCluster

    cluster = PgCluster()
    cluster.start()  # raises (a test error, not a skip) when it cannot start
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def billing(request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path) -> Iterator[Autumn]:
    cluster = None
    store: Any
    if request.param == "memory":
        store = MemoryStore()
    elif request.param == "sqlite":
        store = SqliteStore(tmp_path / "billing.db")
    else:
        from autumn_postgres import PostgresStore

        cluster = request.getfixturevalue("dashboard_pg_cluster")
        name = f"dash{next(_databases)}"
        store = PostgresStore(cluster.create_database(name))
    engine = Autumn(dashboard_catalog(), store=store, clock=clock)
    yield engine
    engine.close()
    if cluster is not None:
        cluster.drop_database(name)


SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class LiveServer:
    """uvicorn serving an ASGI app on a free loopback port, in a thread of this process (so a
    test can look at the same engine through the Python API)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the dashboard server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
