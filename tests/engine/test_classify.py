"""The upgrade test U1-U5 (docs/rules.md), on the pure rule: each rule decides one pair that
the rules after it would decide the other way, so each rule is proven to be the one deciding."""

from __future__ import annotations

from decimal import Decimal

from autumn_core.catalog import INF, Item, Price, Product, Tier
from autumn_core.rules.classify import is_upgrade, longest_months, monthly_total

D = Decimal
TYPES = {"messages": "metered", "users": "allocated", "credits": "metered"}


def usage_messages(price: str = "0.01") -> Item:
    """A pay-per-use metered price: never part of the monthly total (U3, U5)."""
    return Item.priced("messages", price=price, billing="usage")


def seats(price: int) -> Item:
    """A usage-billed price on an allocated feature: a seat price, counted in U5."""
    return Item.priced("users", price=price, billing="usage")


def prepaid(price: int, interval: str = "month", interval_count: int = 1) -> Item:
    return Item.priced(
        "credits", price=price, billing="prepaid", interval=interval, interval_count=interval_count
    )


def test_u1_free_to_free_is_an_upgrade() -> None:
    """Given two free products, when one replaces the other, then it is an upgrade (the rules
    after U1 all find 0 <= 0)."""
    # given
    old = Product("free-a", items=[Item.feature("messages", included=10)])
    new = Product("free-b", items=[Item.feature("messages", included=5)])
    # when / then
    assert is_upgrade(old, new, TYPES) is True
    assert is_upgrade(new, old, TYPES) is True


def test_u3_needs_both_sides_without_a_base_price() -> None:
    """Given an old $50 base price and a new product of pay-per-use prices only, when compared,
    then U3 does not apply (the old side has a base price) and U5 finds $50 > $0: a downgrade;
    the other way round, $0 <= $50: an upgrade."""
    # given
    old = Product("base", price=Price(50))
    new = Product("metered", items=[usage_messages()])
    # when / then
    assert monthly_total(old, TYPES) == D(50)
    assert monthly_total(new, TYPES) == D(0)
    assert is_upgrade(old, new, TYPES) is False
    assert is_upgrade(new, old, TYPES) is True


def test_u3_a_prepaid_price_is_not_metered_usage() -> None:
    """Given two products without a base price whose prices are prepaid ($100 then $10 a month),
    when compared, then U3 does not apply and U5 finds $100 > $10: a downgrade."""
    # given
    old = Product("big-pack", items=[prepaid(100)])
    new = Product("small-pack", items=[prepaid(10)])
    # when / then
    assert is_upgrade(old, new, TYPES) is False
    assert is_upgrade(new, old, TYPES) is True


def test_u3_a_seat_price_is_not_metered_usage() -> None:
    """Given two products without a base price whose prices are usage-billed seats of an
    allocated feature ($20 then $10 a seat), when compared, then U3 does not apply (seats are
    not pay-per-use) and U5 finds $20 > $10: a downgrade."""
    # given
    old = Product("seats-20", items=[seats(20)])
    new = Product("seats-10", items=[seats(10)])
    # when / then
    assert monthly_total(old, TYPES) == D(20)
    assert is_upgrade(old, new, TYPES) is False
    assert is_upgrade(new, old, TYPES) is True


def test_u4_interval_count_multiplies_the_interval() -> None:
    """Given $90 every 3 months and $20 a month, when compared, then U4 sees 3 months against 1
    (not against 1/3): a move to the monthly price is not U4, and U5 finds $30 > $20 a month:
    a downgrade."""
    # given
    quarterly = Product("every-3-months", price=Price(90, interval_count=3))
    monthly = Product("monthly", price=Price(20))
    # when / then
    assert longest_months(quarterly) == D(3)
    assert monthly_total(quarterly, TYPES) == D(30)
    assert is_upgrade(quarterly, monthly, TYPES) is False
    assert is_upgrade(monthly, quarterly, TYPES) is True


def test_u4_an_item_interval_counts_as_the_longest() -> None:
    """Given $20 a month, and $10 a month with a $100 yearly prepaid item, when the first moves
    to the second, then U4 sees the item's 12 months against 1: an upgrade, although U5 would
    find $20 > $18.33 a month."""
    # given
    old = Product("monthly", price=Price(20))
    new = Product("with-yearly-pack", price=Price(10), items=[prepaid(100, "year")])
    # when / then
    assert longest_months(new) == D(12)
    assert monthly_total(new, TYPES) == D(10) + D(100) / D(12)
    assert is_upgrade(old, new, TYPES) is True


def test_u5_sums_every_non_metered_price_and_skips_metered_ones_anywhere() -> None:
    """Given $20 a month with a metered price, then a $15 prepaid item, when it moves to $30 a
    month, then U5 adds $20 + $15 = $35 (the metered price skipped, the item after it counted)
    against $30: a downgrade."""
    # given
    old = Product("mixed", price=Price(20), items=[usage_messages(), prepaid(15)])
    new = Product("flat-30", price=Price(30), items=[usage_messages("0.02")])
    # when / then
    assert monthly_total(old, TYPES) == D(35)
    assert monthly_total(new, TYPES) == D(30)
    assert is_upgrade(old, new, TYPES) is False
    assert is_upgrade(new, old, TYPES) is True


def test_u5_a_one_off_price_counts_as_is() -> None:
    """Given $20 a month with a $100 one-off setup item, when it moves to $30 a month, then U5
    counts the setup fee as is: $120 against $30, a downgrade."""
    # given
    old = Product("with-setup", price=Price(20), items=[prepaid(100, "one_off")])
    new = Product("flat-30", price=Price(30))
    # when / then
    assert monthly_total(old, TYPES) == D(120)
    assert is_upgrade(old, new, TYPES) is False


def test_u5_a_tiered_prepaid_price_counts_its_first_tier() -> None:
    """Given a prepaid item tiered $40 then $10, and a flat $30 a month, when compared, then U5
    counts $40: moving to $30 is a downgrade."""
    # given
    tiered = Item.priced("credits", tiers=[Tier(100, 40), Tier(INF, 10)], billing="prepaid")
    old = Product("tiered", items=[tiered])
    new = Product("flat-30", price=Price(30))
    # when / then
    assert monthly_total(old, TYPES) == D(40)
    assert is_upgrade(old, new, TYPES) is False
