"""What a ``ControlState`` keeps once computed (its lock index, what its locks hold) and carries
to the states made from it: always what the same state computes afresh."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from autumn_core import control_state
from autumn_core.control_state import ControlState, HeldKey, LockState, LockTake

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROWS = ("r1", "r2", "r3")
#: The periods of odd and even locks.
P0, P1 = T0, T0 + timedelta(days=30)


def fresh(cs: ControlState) -> ControlState:
    """The same state built anew: nothing kept on it."""
    return ControlState(cs.locks, cs.windows, cs.lock_due)


def period_of(n: int) -> datetime:
    """Locks of a row taken in two periods (a reset between them): held apart."""
    return T0 + timedelta(days=30 * (n % 2))


def lock(n: int, takes: list[tuple[str, str, Decimal, Decimal]]) -> LockState:
    return LockState(
        f"lk{n}",
        "tokens",
        None,
        Decimal(5),
        Decimal(5),
        tuple(
            LockTake(rid, fid, amount, (("ro1", roll),) if roll else (), period_of(n))
            for rid, fid, amount, roll in takes
        ),
        T0,
        T0 + timedelta(hours=n % 24 + 1),
    )


#: Amounts of several spellings (a total's exponent is the smallest of what it sums).
_amount = st.one_of(
    st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False),
    st.integers(0, 10**6).map(Decimal),
    st.sampled_from([Decimal("5.55"), Decimal("1E+1"), Decimal("0.125"), Decimal("3.0")]),
)
_take = st.tuples(st.sampled_from(ROWS), st.sampled_from(["tokens", "credits"]), _amount, _amount)
#: An open (a lock with these takes) or, a quarter of the time, a settle of the i-th lock
#: still open: enough opens to pass the few locks that are looked up by a scan.
_step = st.tuples(
    st.sampled_from(["open", "open", "open", "settle"]),
    st.lists(_take, max_size=3),
    st.integers(0, 60),
)


def spelled(held: Mapping[HeldKey, Decimal]) -> dict[HeldKey, str]:
    """Totals as they print: ``100`` and ``100.00`` are equal, not the same output."""
    return {key: str(total) for key, total in held.items()}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_step, max_size=60),
    st.sampled_from(["every step", "first, then every step", "at the end only"]),
    st.sampled_from([0, control_state.FEW_LOCKS]),
)
def test_kept_values_match_a_fresh_state_after_any_opens_and_settles(
    steps: list[tuple[str, list[tuple[str, str, Decimal, Decimal]], int]],
    looks: str,
    few: int,
) -> None:
    """Given any run of locks opened and settled, each step made from the one before (or with
    windows or a due hint replaced), then every state answers ``held()`` (to the spelling) and
    ``lock(id)`` exactly as the same state built anew with nothing kept, whether the states
    before it had computed them or not; also with every lock looked up through what is kept
    (``few`` 0)."""
    with mock.patch.object(control_state, "FEW_LOCKS", few):
        cs = ControlState()
        opened: list[str] = []
        settled: list[str] = []
        for n, (kind, takes, pick) in enumerate(steps):
            if looks == "first, then every step":
                cs.held()
                cs.lock("lk0")
            if kind == "open":
                cs = cs.opened(lock(n, takes))
                opened.append(f"lk{n}")
            elif opened:
                settled.append(opened.pop(pick % len(opened)))
                cs = cs.without(settled[-1])
            if pick % 7 == 0:
                cs = cs.with_windows(cs.windows).with_lock_due(cs.lock_due)
            if looks != "at the end only":
                check(cs, opened, settled)
        check(cs, opened, settled)


def summed(cs: ControlState) -> dict[HeldKey, Decimal]:
    """What the locks hold, summed the plain way: every take, in order, from zero."""
    out: dict[HeldKey, Decimal] = {}
    for lk in cs.locks:
        for t in lk.takes:
            key = (t.row_id, t.feature_id, t.period)
            out[key] = out.get(key, Decimal(0)) + t.total
    return {key: total for key, total in out.items() if total}


def check(cs: ControlState, opened: list[str], settled: list[str]) -> None:
    expected = fresh(cs)
    assert spelled(cs.held()) == spelled(expected.held()) == spelled(summed(cs))
    assert all(v != 0 for v in cs.held().values())
    for lock_id in [*opened, *settled, "lk-unknown"]:
        assert cs.lock(lock_id) is expected.lock(lock_id)
    assert [lk.id for lk in cs.locks] == opened


def test_held_sums_every_take_of_a_row_by_its_feature() -> None:
    """Given two locks taking from r1 (one with a rollover) and one from r2 in credits, then
    held() is their totals by (row, feature, period), exact."""
    cs = (
        ControlState()
        .opened(lock(1, [("r1", "tokens", Decimal("2.5"), Decimal(0))]))
        .opened(lock(2, [("r1", "tokens", Decimal("1"), Decimal("0.25"))]))
        .opened(lock(3, [("r2", "credits", Decimal("4"), Decimal(0))]))
    )
    assert cs.held() == {
        ("r1", "tokens", P1): Decimal("2.5"),
        ("r1", "tokens", P0): Decimal("1.25"),
        ("r2", "credits", P1): Decimal("4"),
    }
    assert cs.without("lk2").held() == {
        ("r1", "tokens", P1): Decimal("2.5"),
        ("r2", "credits", P1): Decimal("4"),
    }
    assert cs.without("lk3").without("lk1").without("lk2").held() == {}
