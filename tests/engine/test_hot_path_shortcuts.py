"""The hot path's shortcuts give exactly what the general code gives, over random rows: the
one-row Balance and the carried date-derived values of a customer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from autumn_core.model import CustomerState, RolloverState, RowState, replace, saved_as, with_rows
from autumn_core.rules.balance_view import _summed, balance_view
from autumn_core.rules.deduction import Candidate, deduct
from autumn_core.rules.due import next_due_at

NOW = datetime(2025, 3, 1, tzinfo=UTC)
amounts = st.decimals(min_value=-50, max_value=200, places=2, allow_nan=False, allow_infinity=False)
instants = st.none() | st.integers(-5, 40).map(lambda d: NOW + timedelta(days=d))


@st.composite
def rows(draw: st.DrawFn) -> RowState:
    billing = draw(st.sampled_from([None, "usage", "prepaid"]))
    rollovers = tuple(
        RolloverState(f"ro{i}", b, b, e, NOW)
        for i, (b, e) in enumerate(
            draw(st.lists(st.tuples(amounts.filter(lambda v: v > 0), instants), max_size=2))
        )
    )
    return RowState(
        id=draw(st.uuids()).hex,
        feature_id="m",
        created_at=NOW,
        granted=draw(amounts),
        balance=draw(amounts),
        billing=billing,
        allocated=draw(st.booleans()),
        max_purchase=draw(st.none() | amounts.filter(lambda v: v >= 0))
        if billing == "usage"
        else None,
        unlimited=draw(st.booleans()) and draw(st.booleans()),
        reset=draw(st.sampled_from([None, "month", "day"])),
        reset_count=draw(st.integers(1, 3)),
        next_reset_at=draw(instants),
        expires_at=draw(instants),
        renews_with_product=draw(st.booleans()),
        rollovers=rollovers,
    )


def digits(value: object) -> object:
    """Every field as text, so 0 and -0 or 1.0 and 1 differ."""
    return {k: str(v) for k, v in vars(value).items()}


@settings(max_examples=300, deadline=None)
@given(rows())
@example(RowState("zero", "m", NOW, granted=Decimal(5), balance=Decimal("0.00")))
@example(RowState("short", "m", NOW, granted=Decimal(5), balance=Decimal("-1.50")))
def test_a_one_row_balance_has_the_digits_of_the_general_sum(row: RowState) -> None:
    assert digits(balance_view("m", "metered", [row], NOW)) == digits(
        _summed("m", "metered", [row], NOW)
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(rows(), min_size=1, max_size=4), amounts, st.sampled_from(["cap", "overflow"]))
def test_a_deducted_customer_carries_its_due_instant_and_expiries_correctly(
    row_set: list[RowState], value: Decimal, mode: str
) -> None:
    """Given a customer whose due instant and expiries were computed, when a deduction (or any
    row change) replaces rows, then the carried values equal freshly computed ones."""
    state = CustomerState(pk="p", id="c", created_at=NOW, rows=tuple(row_set))
    assert (state.due_at, state.expiry_points) is not None  # computed, so carried
    changed = deduct([Candidate(r, Decimal(1)) for r in row_set], value, mode, NOW).changed
    moved = {row_set[0].id: replace(row_set[0], expires_at=NOW + timedelta(days=99))}
    for new in (with_rows(state, changed), with_rows(state, moved), saved_as(state, 7)):
        fresh = replace(new, version=new.version)
        assert new.due_at == fresh.due_at == next_due_at(new)
        assert new.expiry_points == fresh.expiry_points
