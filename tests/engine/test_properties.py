"""Property tests of the pure engine over random stacks of own and credit-pool rows.

For any ordered stack, value and mode: what ``applied`` reports is exactly what left the rows
and rollovers (CS1, D10); applied units plus the remainder make up the value (R9); no row ends
below its pass-2 floor except the first row under overflow (R8); pass 2 only runs once pass 1
has emptied every positive row (R7); refunds never lift a row above granted (D5).
"""

from __future__ import annotations

from decimal import Decimal

import hypothesis.strategies as st
from hypothesis import given, settings

from autumn_core.model import RowState
from autumn_core.rules.deduction import deduct, pass2_floor
from tests.engine.helpers import T0, D, ordered, roll, row

COSTS = {"messages": D(1), "credits": D("2.5"), "tokens": D("0.5")}


@st.composite
def stacks(draw: st.DrawFn) -> list[RowState]:
    rows = []
    for i in range(draw(st.integers(1, 6))):
        feature = draw(st.sampled_from(sorted(COSTS)))
        granted = draw(st.decimals(0, 100, places=2))
        balance = draw(st.decimals(-50, 150, places=2))
        billing = draw(st.sampled_from([None, "usage", "prepaid"]))
        rows.append(
            row(
                feature,
                granted=granted,
                balance=balance,
                id=f"r{i}",
                reset=draw(st.sampled_from([None, "day", "month"])),
                billing=billing,
                max_purchase=draw(st.sampled_from([None, 10, "25.5"])) if billing else None,
                add_on=draw(st.booleans()),
                rollovers=[roll(5, draw(st.decimals(0, 5, places=1)))]
                if draw(st.booleans())
                else [],
            )
        )
    return rows


def total(r: RowState) -> Decimal:
    return r.balance + sum((x.balance for x in r.rollovers), D(0))


@settings(max_examples=400, deadline=None)
@given(
    rows=stacks(),
    value=st.decimals(-200, 300, places=2),
    mode=st.sampled_from(["cap", "reject", "overflow"]),
)
def test_applied_is_what_left_the_rows_and_floors_hold(
    rows: list[RowState], value: Decimal, mode: str
) -> None:
    costs = {k: v for k, v in COSTS.items() if k != "messages"}
    cands = ordered(rows, "messages", costs)
    result = deduct(cands, value, mode, T0)
    after = {r.id: result.changed.get(r.id, r) for r in rows}
    # applied per feature = what left that feature's rows (rollovers included)
    for feature in {c.row.feature_id for c in cands}:
        moved = sum((total(r) - total(after[r.id]) for r in rows if r.feature_id == feature), D(0))
        assert result.applied[feature] == moved
    # applied units + remainder = value (deductions), or applied + dropped = value (refunds)
    units = sum((result.applied[f] / COSTS[f] for f in result.applied), D(0))
    if value >= 0:
        assert units + result.remainder == value
    else:
        assert units - result.remainder == value
    for i, c in enumerate(cands):
        old, new = c.row, after[c.row.id]
        if value >= 0:
            assert new.balance <= old.balance
            if new.balance < min(old.balance, D(0)) or (new.balance < 0 <= old.balance):
                floor = pass2_floor(old, mode, i == 0)
                assert floor is not None and new.balance >= floor
                # pass 2 ran, so pass 1 emptied every row that had a positive balance
                assert all(after[x.row.id].balance <= 0 or x.row.balance <= 0 for x in cands)
        else:
            assert new.balance >= old.balance
            assert new.balance <= max(old.balance, old.granted)
            assert new.rollovers == old.rollovers


@settings(max_examples=200, deadline=None)
@given(rows=stacks(), value=st.decimals("0.01", 300, places=2))
def test_reject_dry_run_agrees_with_the_real_deduction(
    rows: list[RowState], value: Decimal
) -> None:
    """K3(d)/K7: the check's dry run decides exactly as the reject-mode track."""
    cands = ordered(rows, "messages", {"credits": "2.5", "tokens": "0.5"})
    dry = deduct(cands, value, "reject", T0, dry_run=True)
    real = deduct(cands, value, "reject", T0)
    assert (dry.applied, dry.remainder, dry.changed) == (real.applied, real.remainder, {})
