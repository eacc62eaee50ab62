"""``fits`` decides exactly as a reject-mode dry run does (K3 d), over random row sets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from autumn_core.model import RolloverState, RowState
from autumn_core.rules.deduction import Candidate, deduct, fits

NOW = datetime(2025, 3, 1, tzinfo=UTC)
amounts = st.decimals(min_value=-50, max_value=200, places=2, allow_nan=False, allow_infinity=False)


@st.composite
def rows(draw: st.DrawFn) -> RowState:
    billing = draw(st.sampled_from([None, "usage", "prepaid"]))
    allocated = draw(st.booleans())
    rollovers = tuple(
        RolloverState(f"ro{i}", b, b, NOW + timedelta(days=d), NOW)
        for i, (b, d) in enumerate(
            draw(
                st.lists(st.tuples(amounts.filter(lambda v: v > 0), st.integers(-5, 5)), max_size=2)
            )
        )
    )
    return RowState(
        id=draw(st.uuids()).hex,
        feature_id="m",
        created_at=NOW,
        granted=Decimal(100),
        balance=draw(amounts),
        billing=billing,
        allocated=allocated,
        max_purchase=draw(st.none() | amounts.filter(lambda v: v >= 0))
        if billing == "usage"
        else None,
        unlimited=draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans()),
        rollovers=rollovers,
    )


#: Mostly the feature's own rows (cost 1), sometimes credit-system rows (CS1).
costs = st.sampled_from([Decimal(1), Decimal(1), Decimal(1), Decimal("2.5"), Decimal(3)])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(rows(), costs), min_size=1, max_size=5), amounts)
def test_fits_agrees_with_a_reject_dry_run(
    row_set: list[tuple[RowState, Decimal]], value: Decimal
) -> None:
    """Given rows (some at a credit cost) and a value, when ``fits`` decides, then it decides
    as a reject-mode dry run of the deduction does."""
    cands = [Candidate(r, cost) for r, cost in row_set]
    dry = deduct(cands, value, "reject", NOW, dry_run=True)
    expected = dry.absorbed_by_unlimited or value <= 0 or dry.remainder == 0
    assert fits(cands, value, NOW) == expected


def test_fits_counts_every_rollover_and_row_balance_together() -> None:
    """K3 d: given a row with 2 left and a row at 0 with a live rollover of 0.5 (neither may go
    below zero), when 2.5 is asked, then it fits; 2.51 does not."""
    full = RowState(
        id="full", feature_id="m", created_at=NOW, granted=Decimal(2), balance=Decimal(2)
    )
    rolled = RowState(
        id="rolled",
        feature_id="m",
        created_at=NOW,
        granted=Decimal(2),
        rollovers=(RolloverState("ro", Decimal("0.5"), Decimal("0.5"), None, NOW),),
    )
    cands = [Candidate(full, Decimal(1)), Candidate(rolled, Decimal(1))]
    assert fits(cands, Decimal("2.5"), NOW)
    assert not fits(cands, Decimal("2.51"), NOW)
