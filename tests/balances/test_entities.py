"""Entities EN1-EN8 and D12 on the facade (DOMAIN.md §5, R12)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from autumn_core import (
    Autumn,
    EntityAlreadyExists,
    EntityNotFound,
    FeatureNotFound,
    InsufficientBalance,
    InvalidRequest,
    ManualClock,
)
from tests.balances.conftest import T0


def entity_remaining(billing: Autumn, c: str, e: str, f: str = "messages") -> D:
    return billing.entities.get(c, e).features[f].remaining


def test_en1_create_validates_feature_and_ids(billing: Autumn) -> None:
    """EN1: unknown feature -> FeatureNotFound; not allocated -> InvalidRequest; dup -> Conflict."""
    billing.customers.create("c")
    with pytest.raises(FeatureNotFound):
        billing.entities.create("c", "e1", "nope")
    with pytest.raises(InvalidRequest):
        billing.entities.create("c", "e1", "messages")
    with pytest.raises(InvalidRequest):
        billing.entities.create("c", "bad id", "users")
    billing.entities.create("c", "e1", "users", name="First")
    with pytest.raises(EntityAlreadyExists):
        billing.entities.create("c", "e1", "users")
    billing.entities.create("d", "e1", "users")  # the same id under another customer
    assert [e.id for e in billing.entities.list("c")] == ["e1"]


def test_en2_creating_an_entity_is_one_usage_of_its_feature(billing: Autumn) -> None:
    """EN2: each entity adds 1 usage to the customer-level rows; free rows may go negative."""
    billing.attach("c", "seats5")
    for i in range(6):
        billing.entities.create("c", f"e{i}", "users")
    b = billing.customers.get("c").features["users"]
    assert (b.usage, b.remaining, b.overage) == (D(6), D(0), D(1))
    assert billing.events.list("c") == []  # no event


def test_en2_past_max_purchase_no_entity_is_created(billing: Autumn) -> None:
    """EN2/R9: usage-billed seats, included 1, max_purchase 2: the 4th entity is refused."""
    billing.attach("c", "paidseats")
    for e in ("a", "b", "c"):
        billing.entities.create("c", e, "users")
    before = billing.customers.get("c")
    with pytest.raises(InsufficientBalance):
        billing.entities.create("c", "d", "users")
    assert billing.customers.get("c") == before


def test_en2_no_row_still_gets_the_entity(billing: Autumn) -> None:
    """EN2: a customer with no users row still gets the entity."""
    billing.customers.create("c")
    e = billing.entities.create("c", "e1", "users")
    assert (e.id, e.customer_id, e.feature_id) == ("e1", "c", "users")


def test_en3_per_entity_rows_for_existing_and_new_entities(billing: Autumn) -> None:
    """EN3: per_entity items give each entity its own row, at attach and for later entities."""
    billing.entities.create("c", "a", "users")
    billing.attach("c", "per_seat")
    billing.entities.create("c", "b", "users")
    c = billing.customers.get("c")
    rows = c.features["messages"].breakdown
    assert sorted((r.entity_id, r.granted) for r in rows) == [("a", D(40)), ("b", D(40))]
    assert c.features["messages"].granted == D(80)
    assert entity_remaining(billing, "c", "a") == D(40)


def test_en8_entity_track_then_customer_track_drains_lexicographically(billing: Autumn) -> None:
    """EN8: a, b with 40 each -> 80; track b 15 -> b 25, c 65; customer 30 -> a 10, b 25, c 35."""
    billing.entities.create("c", "b", "users")
    billing.entities.create("c", "a", "users")
    billing.attach("c", "per_seat")
    assert billing.customers.get("c").features["messages"].remaining == D(80)
    r = billing.track("c", "messages", entity_id="b", value=15)
    assert r.balances["messages"].remaining == D(25)  # b's view
    assert billing.customers.get("c").features["messages"].remaining == D(65)
    billing.track("c", "messages", value=30)
    assert (entity_remaining(billing, "c", "a"), entity_remaining(billing, "c", "b")) == (
        D(10),
        D(25),
    )
    assert billing.customers.get("c").features["messages"].remaining == D(35)


def test_en6_entity_sees_its_rows_and_the_customers(billing: Autumn) -> None:
    """EN6: entity view = its per-entity rows + customer rows; customer view = all rows."""
    billing.entities.create("c", "a", "users")
    billing.entities.create("c", "b", "users")
    billing.attach("c", "per_seat")
    billing.attach("c", "m100")
    billing.track("c", "messages", entity_id="a", value=50)  # a's 40, then 10 customer-level
    assert entity_remaining(billing, "c", "a") == D(90)  # a 0 + customer 90
    assert entity_remaining(billing, "c", "b") == D(130)  # b 40 + customer 90
    assert billing.customers.get("c").features["messages"].remaining == D(130)
    grant = billing.balances.grant("c", "messages", 5, entity_id="b")
    assert grant.remaining == D(135)  # b's view after the grant
    assert entity_remaining(billing, "c", "a") == D(90)


def test_en6_entity_check_and_set_use_the_entity_view(billing: Autumn) -> None:
    """K2/B1 with entity_id: the decision and the edit are over the entity's view only."""
    billing.entities.create("c", "a", "users")
    billing.entities.create("c", "b", "users")
    billing.attach("c", "per_seat")
    assert billing.check("c", "messages", entity_id="a", required_balance=40).allowed
    assert not billing.check("c", "messages", entity_id="a", required_balance=41).allowed
    b = billing.balances.set("c", "messages", remaining=10, entity_id="a")
    assert (b.granted, b.remaining, b.usage) == (D(40), D(10), D(30))
    assert entity_remaining(billing, "c", "b") == D(40)


def test_en4_delete_refunds_one_usage_and_removes_per_entity_rows(billing: Autumn) -> None:
    """EN4: delete refunds 1 usage, drops the entity's rows, and an unknown entity raises."""
    billing.attach("c", "seats5")
    billing.entities.create("c", "a", "users")
    billing.entities.create("c", "b", "users")
    billing.attach("c", "per_seat")
    billing.entities.delete("c", "a")
    c = billing.customers.get("c")
    assert c.features["users"].usage == D(1)
    assert [r.entity_id for r in c.features["messages"].breakdown] == ["b"]
    assert [e.id for e in c.entities] == ["b"]
    with pytest.raises(EntityNotFound):
        billing.entities.delete("c", "a")
    with pytest.raises(EntityNotFound):
        billing.entities.get("c", "a")


def test_en7_unknown_entity_everywhere_is_entity_not_found(billing: Autumn) -> None:
    """EN7: check, track, balances.set/grant and attach with an unknown entity -> EntityNotFound."""
    billing.attach("c", "m100")
    before = billing.customers.get("c")
    with pytest.raises(EntityNotFound):
        billing.check("c", "messages", entity_id="ghost")
    with pytest.raises(EntityNotFound):
        billing.track("c", "messages", entity_id="ghost")
    with pytest.raises(EntityNotFound):
        billing.balances.set("c", "messages", remaining=1, entity_id="ghost")
    with pytest.raises(EntityNotFound):
        billing.balances.grant("c", "messages", 1, entity_id="ghost")
    with pytest.raises(EntityNotFound):
        billing.attach("c", "m10", entity_id="ghost")
    assert billing.customers.get("c") == before
    assert billing.events.list("c") == []


def test_s5_per_entity_rows_reset_each(billing: Autumn, clock: ManualClock) -> None:
    """S5(3): every per-entity row resets the same way."""
    billing.entities.create("c", "a", "users")
    billing.entities.create("c", "b", "users")
    billing.attach("c", "per_seat")
    billing.track("c", "messages", value=70)
    clock.set(T0 + timedelta(days=29))
    c = billing.customers.get("c")
    assert [r.balance for r in c.features["messages"].breakdown] == [D(40), D(40)]
