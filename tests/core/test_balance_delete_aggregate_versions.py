"""balances.delete (B6), events.aggregate (R16), products.versions and attach(version=) (A8),
on every store."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from autumn_core import (
    Autumn,
    Catalog,
    Conflict,
    Feature,
    InvalidRequest,
    Item,
    ManualClock,
    NotFound,
    Price,
    Product,
    ProductNotFound,
)
from tests.conftest import T0, StoreFactory


# -- balances.delete -------------------------------------------------------------------------
def test_b6_deleting_one_grant_by_its_row_id_keeps_the_others(billing: Autumn) -> None:
    # given the free plan's 1000 messages and two grants of 100 and 200
    billing.customers.create("c")
    billing.balances.grant("c", "messages", 100)
    billing.balances.grant("c", "messages", 200)
    rows = billing.customers.get("c").features["messages"].breakdown
    grant_100 = next(r for r in rows if r.product_id is None and r.granted == D(100))
    # when the 100 grant is deleted by its row id
    billing.balances.delete("c", balance_id=grant_100.id)
    # then the plan row and the 200 grant remain
    after = billing.customers.get("c").features["messages"]
    assert sorted((r.product_id or "", r.granted) for r in after.breakdown) == [
        ("", D(200)),
        ("free", D(1000)),
    ]
    assert after.granted == D(1200)


def test_b6_recalculate_moves_the_deleted_usage_onto_the_remaining_rows(billing: Autumn) -> None:
    # given a monthly 300 grant of words (no plan row) and a 200 grant; 120 words used
    billing.customers.create("c")
    billing.balances.grant("c", "words", 300, reset="month")
    billing.balances.grant("c", "words", 200)
    billing.balances.set("c", "words", usage=120)
    monthly = next(
        r for r in billing.customers.get("c").features["words"].breakdown if r.reset == "month"
    )
    used = monthly.granted - monthly.balance
    assert used == D(120)  # the resetting grant is drained first (O-rules)
    # when the monthly grant is deleted with recalculate
    billing.balances.delete("c", "words", interval="month", recalculate=True)
    # then its usage is deducted from the 200 grant
    words = billing.customers.get("c").features["words"]
    assert (words.granted, words.remaining, words.usage) == (D(200), D(200) - used, used)


def test_b6_without_recalculate_the_usage_goes_with_the_row(billing: Autumn) -> None:
    billing.customers.create("c")
    billing.balances.grant("c", "words", 300, reset="month")
    billing.balances.grant("c", "words", 200)
    billing.balances.set("c", "words", usage=250)
    billing.balances.delete("c", "words", interval="month")
    words = billing.customers.get("c").features["words"]
    assert (words.granted, words.remaining, words.usage) == (D(200), D(200), D(0))


def test_b6_refusals_change_nothing(billing: Autumn) -> None:
    billing.customers.create("c")
    billing.balances.grant("c", "messages", 100)
    before = billing.customers.get("c").features["messages"]
    with pytest.raises(Conflict, match="granted by product 'free'"):
        billing.balances.delete("c", "messages")  # the free plan's row matches too
    with pytest.raises(NotFound, match="no balance of 'words'"):
        billing.balances.delete("c", "words")
    with pytest.raises(InvalidRequest, match="feature_id or balance_id"):
        billing.balances.delete("c")
    with pytest.raises(InvalidRequest, match="interval"):
        billing.balances.delete("c", "messages", interval="fortnight")
    assert billing.customers.get("c").features["messages"] == before
    # a grant alone is picked out of the plan's row by interval (None: never resets)
    billing.balances.delete("c", "messages", interval=None)
    assert billing.customers.get("c").features["messages"].granted == D(1000)


# -- events.aggregate ------------------------------------------------------------------------
def test_r16_daily_bins_with_zeros_totals_and_event_names(
    billing: Autumn, clock: ManualClock
) -> None:
    # given usage over three days: by feature id, by an event name messages listens to
    billing.customers.create("c")
    billing.track("c", "messages", value=3, properties={"model": "a"})
    billing.track("c", event_name="chat", value="2.5", properties={"model": "b"})
    clock.advance(days=2)
    billing.track("c", "messages", value=4, properties={"model": "a"})
    day0 = T0.replace(hour=0, minute=0, second=0, microsecond=0)
    # when three days are aggregated per day
    agg = billing.events.aggregate(
        "c", ["messages", "words"], start=day0, end=day0 + timedelta(days=3)
    )
    # then every day is listed, the empty one with zeros
    assert [b.period_start for b in agg.bins] == [day0 + timedelta(days=i) for i in range(3)]
    assert [b.values["messages"] for b in agg.bins] == [D("5.5"), D(0), D(4)]
    assert [b.values["words"] for b in agg.bins] == [D(0), D(0), D(0)]
    assert (agg.totals["messages"].count, agg.totals["messages"].sum) == (3, D("9.5"))
    # counting events and grouping by a property
    counted = billing.events.aggregate(
        "c", "messages", start=day0, end=day0 + timedelta(days=3), count=True
    )
    assert [b.values["messages"] for b in counted.bins] == [D(2), D(0), D(1)]
    grouped = billing.events.aggregate(
        "c",
        "messages",
        start=day0,
        end=day0 + timedelta(days=3),
        group_by="properties.model",
        max_groups=1,
    )
    assert grouped.bins[0].grouped == {"messages": {"a": D(3), "Other": D("2.5")}}
    assert grouped.bins[1].grouped == {"messages": {"a": D(0)}}


def test_r16_bad_arguments_are_refused(billing: Autumn) -> None:
    billing.customers.create("c")
    with pytest.raises(InvalidRequest, match="bin_size"):
        billing.events.aggregate("c", "messages", start=T0, end=T0 + timedelta(1), bin_size="x")
    with pytest.raises(InvalidRequest, match="end must be after start"):
        billing.events.aggregate("c", "messages", start=T0, end=T0)
    with pytest.raises(InvalidRequest, match="bins"):
        billing.events.aggregate(
            "c", "messages", start=T0, end=T0 + timedelta(days=400), bin_size="hour"
        )


# -- versions ------------------------------------------------------------------------------
def _catalog(price: int) -> Catalog:
    return Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product("pro", price=Price(price), items=[Item.feature("messages", included=price)])
        ],
    )


def test_a8_attach_picks_a_stored_version(clock: ManualClock, new_store: StoreFactory) -> None:
    # given pro v1 at $20 held by a customer, then the catalog changes pro to $30 (v2)
    store = new_store()
    old = Autumn(_catalog(20), store=store, clock=clock)
    old.attach("early", "pro")
    clock.advance(days=1)
    billing = Autumn(_catalog(30), store=store, clock=clock)
    versions = billing.products.versions("pro")
    assert [(v.version, v.latest, v.created_at) for v in versions] == [
        (1, False, T0),
        (2, True, T0 + timedelta(days=1)),
    ]
    assert versions[0].product.price.amount == D(20)
    # when a new customer is attached to version 1
    preview = billing.preview_attach("late", "pro", version=1)
    r = billing.attach("late", "pro", version=1)
    # then they hold v1's items and were invoiced v1's price
    assert preview.due_now == D(20)
    assert r.product is not None and r.product.version == 1
    assert r.invoice is not None and r.invoice.total == D(20)
    assert billing.customers.get("late").features["messages"].granted == D(20)
    # and without version= the latest is attached
    assert billing.attach("new", "pro").product.version == 2  # type: ignore[union-attr]
    with pytest.raises(ProductNotFound, match="no version 3"):
        billing.attach("x", "pro", version=3)
    with pytest.raises(InvalidRequest, match="version must be an integer"):
        billing.attach("x", "pro", version="1")  # type: ignore[arg-type]
    old.close()
