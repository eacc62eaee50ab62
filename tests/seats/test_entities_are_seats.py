"""EN2: entities that exist before a plan count as its seats (Autumn's "attach pro with
allocated, create entities"), on every store.

Given 5 ``users`` entities, attaching ``pro`` ($20/month, 3 users included, $10 per extra seat,
usage-billed) shows usage 5 and bills $40 for the first period.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from autumn_core import (
    Autumn,
    Catalog,
    Feature,
    FreeTrial,
    InsufficientBalance,
    Item,
    ManualClock,
    Price,
    Product,
)
from tests.seats.conftest import T0, Make

D = Decimal


def seats(included: int, **kw: object) -> Item:
    return Item.priced("users", included=included, price=10, billing="usage", **kw)  # type: ignore[arg-type]


def catalog(*, default: bool = False) -> Catalog:
    """Autumn's example has no default product; ``default`` adds a free one (3 users)."""
    free = Product("free", name="Free", default=True, items=[Item.feature("users", included=3)])
    return Catalog(
        features=[Feature.allocated("users"), Feature.metered("messages")],
        products=[
            *([free] if default else []),
            Product("pro", name="Pro", price=Price(20), items=[seats(3)]),
            Product("team", name="Team", price=Price(50), items=[seats(10)]),
            Product("small", name="Small", price=Price(20), items=[seats(3, max_purchase=1)]),
            Product(
                "pro-trial",
                name="Pro trial",
                price=Price(20),
                free_trial=FreeTrial(7),
                items=[seats(3)],
            ),
            Product("more", name="More", add_on=True, items=[Item.feature("users", included=2)]),
            Product("extra", name="Extra", add_on=True, price=Price(5), items=[seats(1)]),
            Product("chat", name="Chat", items=[Item.feature("messages", included=5)]),
        ],
    )


def with_entities(make: Make, n: int = 5, *, default: bool = False) -> Autumn:
    billing = make(catalog(default=default))
    billing.customers.create("c")
    for i in range(n):
        billing.entities.create("c", f"u{i}", "users")
    return billing


def users(billing: Autumn) -> tuple[Decimal, Decimal, Decimal]:
    b = billing.customers.get("c").features["users"]
    return b.granted, b.usage, b.remaining


def totals(billing: Autumn) -> list[Decimal]:
    return [i.total for i in billing.invoices.list("c")]


def test_attach_counts_existing_entities_and_bills_the_paid_seats(make: Make) -> None:
    # given 5 users entities and no product
    billing = with_entities(make)
    # when pro is attached
    result = billing.attach("c", "pro")
    # then the 5 entities are pro's usage, and the first period bills $20 + 2 paid seats
    assert users(billing) == (D(3), D(5), D(0))
    assert billing.customers.get("c").features["users"].overage == D(2)
    assert result.invoice is not None
    assert result.invoice.total == D("40.00")
    lines = [(line.feature_id or "", line.quantity, line.amount) for line in result.invoice.lines]
    assert sorted(lines) == [("", D(1), D("20.00")), ("users", D(2), D("20.00"))]
    assert totals(billing) == [D("40.00")]


def test_deleting_entities_refunds_per_on_decrease(make: Make, clock: ManualClock) -> None:
    # given pro with 5 counted entities, half-way through April (30 days)
    billing = with_entities(make)
    billing.attach("c", "pro")
    clock.set(T0 + timedelta(days=15))
    # when 2 entities are deleted
    billing.entities.delete("c", "u0")
    billing.entities.delete("c", "u1")
    # then each released paid seat is refunded for the unused half (prorate_immediately)
    assert users(billing) == (D(3), D(3), D(0))
    assert totals(billing) == [D("40.00"), D("-5.00"), D("-5.00")]


def test_upgrade_carries_the_usage_and_bills_no_seat(make: Make) -> None:
    # given pro with 5 counted entities
    billing = with_entities(make)
    billing.attach("c", "pro")
    # when the customer upgrades to team (10 seats included)
    result = billing.attach("c", "team")
    # then the usage carried is 5, not 10, and the team invoice has no seat line
    assert users(billing) == (D(10), D(5), D(5))
    assert result.invoice is not None
    team_lines = [line for line in result.invoice.lines if line.product_id == "team"]
    assert [line.feature_id for line in team_lines] == [None]
    assert not any(line.feature_id == "users" and line.amount > 0 for line in result.invoice.lines)


def test_past_max_purchase_the_attach_is_refused_and_nothing_changes(make: Make) -> None:
    # given 5 entities; "small" allows 3 included + 1 paid seat
    billing = with_entities(make)
    before = billing.customers.get("c")
    # when small is attached, then it is refused and nothing changed
    with pytest.raises(InsufficientBalance, match="users"):
        billing.attach("c", "small")
    after = billing.customers.get("c")
    assert after.products == before.products == []
    assert "users" not in after.features
    assert totals(billing) == []


def test_an_add_on_does_not_count_the_entities_twice(make: Make) -> None:
    # given pro holding the 5 entities
    billing = with_entities(make)
    billing.attach("c", "pro")
    # when an add-on granting 2 more users is attached
    billing.attach("c", "more")
    # then the usage is still 5 (3 + 2 granted) and no seat is billed again
    assert users(billing)[:2] == (D(5), D(5))
    assert totals(billing) == [D("40.00")]


def test_a_grant_counts_the_entities_when_it_is_the_first_row(make: Make) -> None:
    # given 5 entities and no product granting users
    billing = with_entities(make)
    # when 8 users are granted
    billing.balances.grant("c", "users", 8)
    # then the grant holds the 5 entities
    assert users(billing) == (D(8), D(5), D(3))


def test_a_trial_counts_them_free_and_conversion_bills_them(make: Make, clock: ManualClock) -> None:
    # given 5 entities, when the pro trial is attached
    billing = with_entities(make)
    assert billing.preview_attach("c", "pro-trial").next_cycle_total == D("40.00")
    billing.attach("c", "pro-trial")
    # then usage is 5 and nothing is charged; the conversion bills $20 + 2 seats
    assert users(billing) == (D(3), D(5), D(0))
    assert totals(billing) == []
    clock.set(T0 + timedelta(days=7, minutes=1))
    billing.process_due()
    assert totals(billing) == [D("40.00")]


def test_canceling_immediately_moves_them_to_the_default(make: Make) -> None:
    # given the free default, then pro, holding the 5 entities
    billing = with_entities(make, default=True)
    billing.attach("c", "pro")
    assert users(billing) == (D(3), D(5), D(0))
    # when pro is canceled now, then the free default (3 included) counts all 5
    billing.cancel("c", "pro", immediately=True)
    assert [p.id for p in billing.customers.get("c").products if p.status == "active"] == ["free"]
    assert users(billing) == (D(3), D(5), D(0))


def test_a_scheduled_switch_counts_them_and_bills_the_seats(make: Make, clock: ManualClock) -> None:
    # given team holding the 5 entities, downgraded to pro at the period end (May 1)
    billing = with_entities(make)
    billing.attach("c", "team")
    billing.attach("c", "pro")
    # when the switch happens
    clock.set(T0 + timedelta(days=30, minutes=1))
    billing.process_due()
    # then pro counts the 5 entities and its first period bills $20 + 2 seats
    assert users(billing) == (D(3), D(5), D(0))
    assert totals(billing) == [D("50.00"), D("40.00")]


def test_canceling_two_paid_seat_add_ons_at_once(make: Make, clock: ManualClock) -> None:
    # given the paid seat add-on attached twice (two instances), half-way through April
    billing = with_entities(make, 0)
    billing.attach("c", "extra")
    billing.attach("c", "extra")
    clock.set(T0 + timedelta(days=15))
    # when it is canceled now, then both instances end, each refunding its unused half
    billing.cancel("c", "extra", immediately=True)
    assert [p.id for p in billing.customers.get("c").products] == []
    assert totals(billing) == [D("5.00"), D("5.00"), D("-2.50"), D("-2.50")]
