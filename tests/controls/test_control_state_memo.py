"""What a ``ControlState`` keeps once computed (its lock index, what its locks hold) and carries
to the states made from it: always what the same state computes afresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from autumn_core.control_state import ControlState, LockState, LockTake

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROWS = ("r1", "r2", "r3")


def fresh(cs: ControlState) -> ControlState:
    """The same state built anew: nothing kept on it."""
    return ControlState(cs.locks, cs.windows, cs.lock_due)


def lock(n: int, takes: list[tuple[str, str, Decimal, Decimal]]) -> LockState:
    return LockState(
        f"lk{n}",
        "tokens",
        None,
        Decimal(5),
        Decimal(5),
        tuple(
            LockTake(rid, fid, amount, (("ro1", roll),) if roll else ())
            for rid, fid, amount, roll in takes
        ),
        T0,
        T0 + timedelta(hours=n % 24 + 1),
    )


_amount = st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False)
_take = st.tuples(st.sampled_from(ROWS), st.sampled_from(["tokens", "credits"]), _amount, _amount)
#: An open (a lock with these takes) or, a quarter of the time, a settle of the i-th lock
#: still open: enough opens to pass the few locks that are looked up by a scan.
_step = st.tuples(
    st.sampled_from(["open", "open", "open", "settle"]),
    st.lists(_take, max_size=3),
    st.integers(0, 60),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_step, max_size=60), st.booleans())
def test_kept_values_match_a_fresh_state_after_any_opens_and_settles(
    steps: list[tuple[str, list[tuple[str, str, Decimal, Decimal]], int]], look_first: bool
) -> None:
    """Given any run of locks opened and settled, each step made from the one before, then
    every state answers ``held()`` and ``lock(id)`` exactly as the same state built anew (with
    nothing kept), whether or not the state before it had computed them."""
    cs = ControlState()
    opened: list[str] = []
    settled: list[str] = []
    for n, (kind, takes, pick) in enumerate(steps):
        if look_first:
            cs.held()
            cs.lock("lk0")
        if kind == "open":
            cs = cs.opened(lock(n, takes))
            opened.append(f"lk{n}")
        elif opened:
            settled.append(opened.pop(pick % len(opened)))
            cs = cs.without(settled[-1])
        expected = fresh(cs)
        assert cs.held() == expected.held()
        assert all(v != 0 for v in cs.held().values())
        for lock_id in [*opened, *settled, "lk-unknown"]:
            assert cs.lock(lock_id) is expected.lock(lock_id)
        assert [lk.id for lk in cs.locks] == opened


def test_held_sums_every_take_of_a_row_by_its_feature() -> None:
    """Given two locks taking from r1 (one with a rollover) and one from r2 in credits, then
    held() is their totals by (row, feature), exact."""
    cs = (
        ControlState()
        .opened(lock(1, [("r1", "tokens", Decimal("2.5"), Decimal(0))]))
        .opened(lock(2, [("r1", "tokens", Decimal("1"), Decimal("0.25"))]))
        .opened(lock(3, [("r2", "credits", Decimal("4"), Decimal(0))]))
    )
    assert cs.held() == {("r1", "tokens"): Decimal("3.75"), ("r2", "credits"): Decimal("4")}
    assert cs.without("lk2").held() == {
        ("r1", "tokens"): Decimal("2.5"),
        ("r2", "credits"): Decimal("4"),
    }
    assert cs.without("lk3").without("lk1").without("lk2").held() == {}
