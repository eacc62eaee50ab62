"""Issue 19: quantities are kept exactly or refused, and equal values print the same in every
store and in every process that reads them."""

from __future__ import annotations

import decimal
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import Autumn, Catalog, Feature, InvalidRequest, Item, Product
from tests.seats.conftest import Make

D = Decimal


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product(
                "free",
                default=True,
                items=[Item.feature("messages", included=100, reset="month")],
            )
        ],
    )


def printed(billing: Autumn) -> tuple[list[str], str, str, str]:
    b = billing.customers.get("c").features["messages"]
    return (
        [str(e.value) for e in billing.events.list("c")],
        str(b.granted),
        str(b.usage),
        str(b.remaining),
    )


def test_the_largest_value_with_twelve_places_is_kept_exactly(
    make: Make, second_store: Callable[[Any], Any]
) -> None:
    # given 10^15 granted on top of 100 included
    billing = make(catalog())
    billing.balances.grant("c", "messages", 10**15)
    # when the largest value with the most places is tracked
    value = "999999999999999.999999999999"
    result = billing.track("c", "messages", value=value)
    # then the event, what was applied and the balance are exact (28 digits, not rounded)
    expected = (
        [value],
        "1000000000000100",
        value,
        "100.000000000001",
    )
    assert printed(billing) == expected
    assert result.balances["messages"].remaining == D("100.000000000001")
    other = Autumn(catalog(), store=second_store(billing.store), clock=billing.clock)
    assert printed(other) == expected


def test_more_places_than_kept_are_refused(make: Make) -> None:
    billing = make(catalog())
    with pytest.raises(InvalidRequest, match="more than 12 decimal places"):
        billing.track("c", "messages", value=D("0.1234567890123"))
    # trailing zeros are not places: this is 0.5
    billing.track("c", "messages", value="0.500000000000000000")
    assert printed(billing)[0] == ["0.5"]


@pytest.mark.parametrize("spelling", [50, 50.0, "50.00", D("5E+1"), D("50.000"), " 50 "])
def test_equal_values_print_the_same_everywhere(
    make: Make, second_store: Callable[[Any], Any], spelling: object
) -> None:
    # given 50 tracked, however it is spelled
    billing = make(catalog())
    billing.track("c", "messages", value=spelling)
    billing.balances.grant("c", "messages", spelling)
    # then every store, and a second process, prints it as 50
    expected = (["50"], "150", "50", "100")
    assert printed(billing) == expected
    other = Autumn(catalog(), store=second_store(billing.store), clock=billing.clock)
    assert printed(other) == expected


def test_sums_of_many_of_the_largest_values_are_exact(
    make: Make, second_store: Callable[[Any], Any]
) -> None:
    """Given 100 included messages and 40 grants of the largest value with the most places,
    when 50 tracks of that value overflow them, then the balance's sums (40 digits past 10^16,
    beyond Decimal's default 28) are exact on every store and in a second process."""
    # given
    billing = make(catalog())
    value = D("999999999999999.999999999999")
    for _ in range(40):
        billing.balances.grant("c", "messages", value)
    # when
    for _ in range(50):
        result = billing.track("c", "messages", value=value, overage="overflow")
    # then
    expected = {
        "granted": D("40000000000000099.999999999960"),
        "usage": D("49999999999999999.999999999950"),
        "remaining": D(0),
        "overage": D("9999999999999899.999999999990"),
    }
    b = billing.customers.get("c").features["messages"]
    assert {k: getattr(b, k) for k in expected} == expected
    assert {k: getattr(result.balances["messages"], k) for k in expected} == expected
    assert [e.value for e in billing.events.list("c", limit=100)] == [value] * 50
    other = Autumn(catalog(), store=second_store(billing.store), clock=billing.clock)
    seen = other.customers.get("c").features["messages"]
    assert {k: getattr(seen, k) for k in expected} == expected
    assert printed(other) == printed(billing)


def test_the_callers_decimal_context_does_not_round_the_engine(make: Make) -> None:
    """Given a caller whose thread computes with 6 significant digits, when it grants and
    tracks values of 16 digits, then the engine still keeps and sums them exactly."""
    # given
    billing = make(catalog())
    with decimal.localcontext(prec=6):
        # when
        billing.balances.grant("c", "messages", "123456789.123456")
        result = billing.track("c", "messages", value="0.000001")
        b = billing.customers.get("c").features["messages"]
    # then
    assert result.balances["messages"].remaining == D("123456889.123455")
    assert (b.granted, b.usage) == (D("123456889.123456"), D("0.000001"))
