"""Auto top-ups (docs/rules.md TU1-TU5), on every store: armed once per crossing, charged
through the gateway, granted with the charge, limited per period, reported as events."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import Autumn, Catalog, Feature, Item, ManualClock, Price, Product
from autumn_memory import MemoryGateway
from tests.conftest import StoreFactory

from .conftest import T0

D = Decimal
TOPUP = {"feature_id": "credits", "enabled": True, "threshold": 500, "quantity": 1000}


def topup_catalog() -> Catalog:
    """Autumn's example: 5,000 credits a month, and $10 per 1,000 credits one-off prepaid."""
    return Catalog(
        features=[Feature.metered("credits")],
        products=[
            Product(
                "standard",
                price=Price(50),
                items=[
                    Item.feature("credits", included=5000, reset="month"),
                    Item.priced(
                        "credits",
                        price=10,
                        billing="prepaid",
                        billing_units=1000,
                        interval="one_off",
                        reset=None,
                    ),
                ],
            ),
            Product("plain", items=[Item.feature("credits", included=5000, reset="month")]),
        ],
    )


@pytest.fixture
def engine(new_store: StoreFactory, clock: ManualClock, gateway: MemoryGateway) -> Autumn:
    billing = Autumn(topup_catalog(), store=new_store(), gateway=gateway, clock=clock)
    billing.customers.create("ann")
    billing.attach("ann", "standard")
    billing.customers.update("ann", billing_controls={"auto_topups": [TOPUP]})
    return billing


def remaining(billing: Autumn) -> Decimal:
    return billing.customers.get("ann").features["credits"].remaining


def topup_invoices(billing: Autumn) -> list[tuple[Decimal, str]]:
    return [
        (i.total, i.status)
        for i in billing.invoices.list("ann")
        if i.lines and i.lines[0].description.startswith("Auto top-up")
    ]


def topup_events(billing: Autumn) -> list[dict[str, Any]]:
    return [
        {"type": e.event.type, **e.event.data}
        for e in billing.webhooks.list()
        if "auto_topup" in e.event.type
    ]


def test_falling_below_the_threshold_buys_the_quantity_once(engine: Autumn) -> None:
    # given 5,000 credits and a top-up of 1,000 below 500
    # when usage takes the balance to 400
    engine.track("ann", "credits", value=4600)
    # then 1,000 credits were bought for $10 and granted
    assert remaining(engine) == D(1400)
    assert topup_invoices(engine) == [(D("10.00"), "paid")]
    [event] = topup_events(engine)
    assert event["type"] == "billing.auto_topup_succeeded"
    assert (event["quantity_granted"], event["threshold"], event["balance_after"]) == (
        1000,
        500,
        1400,
    )
    assert event["invoice"]["total"] == D(10) and event["invoice"]["status"] == "paid"
    # and more usage above the threshold buys nothing more
    engine.track("ann", "credits", value=800)
    assert remaining(engine) == D(600)
    assert len(topup_invoices(engine)) == 1


def test_each_crossing_buys_once(engine: Autumn) -> None:
    engine.track("ann", "credits", value=4600)  # 400 -> +1000 = 1400
    engine.track("ann", "credits", value=1000)  # 400 again: a second crossing
    assert remaining(engine) == D(1400)
    assert topup_invoices(engine) == [(D("10.00"), "paid"), (D("10.00"), "paid")]


def test_a_declined_top_up_grants_nothing_and_is_not_retried_while_below(
    engine: Autumn, gateway: MemoryGateway
) -> None:
    # given a card that declines the next charge
    gateway.decline_next()
    # when usage crosses the threshold, then goes on below it
    engine.track("ann", "credits", value=4600)
    engine.track("ann", "credits", value=100)
    # then nothing was granted, the declined invoice is void, one failure was reported
    assert remaining(engine) == D(300)
    assert topup_invoices(engine) == [(D("10.00"), "void")]
    [event] = topup_events(engine)
    assert (event["type"], event["reason"], event["balance"]) == (
        "billing.auto_topup_failed",
        "charge_failed",
        400,
    )
    # and once the balance is back above (a grant) and crosses again, it buys
    engine.balances.set("ann", "credits", remaining=900)
    engine.track("ann", "credits", value=500)
    assert remaining(engine) == D(1400)
    assert topup_invoices(engine)[-1] == (D("10.00"), "paid")


def test_a_crossing_by_the_write_that_applies_a_reset_tops_up(
    engine: Autumn, gateway: MemoryGateway, clock: ManualClock
) -> None:
    # given a declined top-up left the balance below the threshold (400) at the period's end
    gateway.decline_next()
    engine.track("ann", "credits", value=4600)
    assert (remaining(engine), topup_invoices(engine)) == (D(400), [(D("10.00"), "void")])
    # and the monthly reset is due (reads show 5,000; nothing has written it yet)
    clock.advance(days=31)
    assert remaining(engine) == D(5000)
    # when the first write of the new period applies the reset and crosses the threshold
    engine.track("ann", "credits", value=4600)
    # then that crossing buys (the reset took the balance back above it first)
    assert topup_invoices(engine)[-1] == (D("10.00"), "paid")
    assert remaining(engine) == D(1400)


def test_balances_set_below_the_threshold_tops_up(engine: Autumn) -> None:
    engine.balances.set("ann", "credits", remaining=100)
    assert remaining(engine) == D(1100)


def test_enabling_top_ups_while_below_the_threshold_tops_up(engine: Autumn) -> None:
    engine.customers.update("ann", billing_controls={"auto_topups": []})
    engine.track("ann", "credits", value=4800)
    assert topup_invoices(engine) == []
    engine.customers.update("ann", billing_controls={"auto_topups": [TOPUP]})
    assert remaining(engine) == D(1200)


def test_the_purchase_limit_caps_top_ups_per_period(engine: Autumn, clock: ManualClock) -> None:
    # given at most one top-up a day
    limited = {**TOPUP, "purchase_limit": {"interval": "day", "limit": 1}}
    engine.customers.update("ann", billing_controls={"auto_topups": [limited]})
    # when the balance crosses twice in one day, then again the next day
    engine.track("ann", "credits", value=4600)
    engine.track("ann", "credits", value=1000)
    blocked = remaining(engine)
    clock.advance(days=1, seconds=1)
    engine.balances.set("ann", "credits", remaining=600)
    engine.track("ann", "credits", value=200)
    # then the second was refused (reported), the third bought
    assert blocked == D(400)
    assert [e["reason"] for e in topup_events(engine) if "reason" in e] == [
        "purchase_limit_reached"
    ]
    assert remaining(engine) == D(1400)
    assert len(topup_invoices(engine)) == 2


def test_without_a_one_off_prepaid_price_the_top_up_fails(
    new_store: StoreFactory, clock: ManualClock, gateway: MemoryGateway
) -> None:
    billing = Autumn(topup_catalog(), store=new_store(), gateway=gateway, clock=clock)
    billing.customers.create("ann", billing_controls={"auto_topups": [TOPUP]})
    billing.attach("ann", "plain")
    billing.track("ann", "credits", value=4600)
    assert [e["reason"] for e in topup_events(billing)] == ["missing_customer_product"]
    assert remaining(billing) == D(400)


def test_the_clock_dates_the_events(engine: Autumn, clock: ManualClock) -> None:
    clock.advance(hours=2)
    engine.track("ann", "credits", value=4600)
    [entry] = [e for e in engine.webhooks.list() if "auto_topup" in e.event.type]
    assert entry.event.occurred_at == clock.now() and clock.now() > T0


def test_concurrent_usage_crossing_the_threshold_buys_once(
    engine: Autumn, gateway: MemoryGateway
) -> None:
    # given 5,000 credits and eight requests of 600 at once (the last one to land crosses 500)
    def use() -> None:
        engine.track("ann", "credits", value=600)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then exactly one top-up was charged and granted
    assert topup_invoices(engine) == [(D("10.00"), "paid")]
    assert [i.total for i in gateway.invoices.values() if i.total == 10] == [D(10)]
    assert remaining(engine) == D(1200)


def test_a_gateway_error_during_a_top_up_does_not_fail_the_track_that_armed_it(
    engine: Autumn, gateway: MemoryGateway, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a gateway whose charge raises an error of its own (not an AutumnError)
    def hung_up(request: Any) -> Any:
        raise ConnectionResetError("the provider hung up")

    real = gateway.charge
    monkeypatch.setattr(gateway, "charge", hung_up)
    # when usage crosses the threshold
    engine.track("ann", "credits", value=4600)
    # then the track stands (it committed before the top-up ran) and nothing was bought
    assert remaining(engine) == D(400)
    assert [e.value for e in engine.events.list("ann")] == [D(4600)]
    # and once the gateway is back, process_due buys the top-up once
    monkeypatch.setattr(gateway, "charge", real)
    clock.advance(minutes=30)
    engine.process_due()
    engine.process_due()
    assert remaining(engine) == D(1400)
    assert topup_invoices(engine) == [(D("10.00"), "paid")]
