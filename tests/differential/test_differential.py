"""One random sequence of public calls on MemoryStore and on another store, side by side.

Each drawn sequence (30 steps: creates by id and by email, tracks with refunds and idempotency
keys, checks with ``send_event``, balances set and grant, every attach scenario with and without
trials, cancel and uncancel, entities, clock moves across month ends, ``process_due``, and the bad
inputs of issue 19 (``_steps.BAD_CALLS``) between them) runs on
a fresh MemoryStore, the reference, and on a fresh SQLite file or PostgreSQL database (the
session's throwaway cluster). After every step the two engines must have returned the same
outcome (result data, or the same error code) and must show the same public state: every
customer (``to_dict``), its events and its invoices. Equality is transitive, so the two pairs
together prove the three stores alike.

The budget is fixed and reproducible: ``derandomize=True`` draws the same 200 sequences on every
run, with no example database, so CI runs exactly what a developer runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from autumn_core import Autumn, ManualClock
from autumn_core.ports import Store
from autumn_memory import MemoryGateway, MemoryStore
from autumn_postgres import PostgresStore
from autumn_sqlite import SqliteStore
from tests.differential._engines import IdCounter, matching_ids
from tests.differential._steps import (
    BAD_CALLS,
    EMAILS,
    T0,
    catalog,
    public_state,
    run_step,
    sequences,
)
from tests.pg_cluster import empty_autumn_tables

SEQUENCES = 200
STEPS = 30

_files = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgres"])
def other_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """A factory of fresh, empty stores of the kind under test (one per drawn sequence)."""
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / f"diff{next(_files)}.db")
    url: str = request.getfixturevalue("pg_store_url")

    def fresh() -> Store:
        empty_autumn_tables(url, restart_identity=True)
        return PostgresStore(url)

    return fresh


@pytest.fixture(scope="module")
def ids() -> Iterator[IdCounter]:
    with matching_ids() as counter:
        yield counter


def _engine(store: Store) -> tuple[Autumn, ManualClock]:
    clock = ManualClock(T0)
    gateway = MemoryGateway(clock=clock)
    return Autumn(catalog(), store=store, gateway=gateway, clock=clock), clock


def _stored(state: Any) -> Any:
    """The state without the ids of the rows a read projects (new on every read)."""
    if isinstance(state, dict):
        return {k: _stored(v) for k, v in state.items() if k != "breakdown"} | (
            {"breakdown": [_stored({**r, "id": None}) for r in state["breakdown"]]}
            if "breakdown" in state
            else {}
        )
    if isinstance(state, list):
        return [_stored(v) for v in state]
    return state


def _refused(outcome: Any) -> bool:
    return isinstance(outcome, str) and outcome.startswith("error:")


@settings(
    max_examples=SEQUENCES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=sequences(STEPS))
def test_every_store_shows_the_same_public_state(
    sequence: list[tuple[Any, ...]], other_store: Callable[[], Store], ids: IdCounter
) -> None:
    """Given a fresh MemoryStore engine and a fresh engine on the other store, at the same
    instant with the same catalog, when each step of the sequence runs on both, then after
    every step both returned the same outcome and show the same public state, and a refused
    call (a bad input or a domain error) left that state as it was."""
    # given
    ids.rewind(0)
    reference, ref_clock = _engine(MemoryStore())
    ids.rewind(0)
    other, other_clock = _engine(other_store())
    previous = public_state(reference)
    try:
        for number, step in enumerate(sequence, start=1):
            # when
            ids.rewind(number)
            expected = run_step(reference, ref_clock, step), public_state(reference)
            ids.rewind(number)
            seen = run_step(other, other_clock, step), public_state(other)
            # then
            assert seen[0] == expected[0], f"step {number} {step!r}: outcomes differ"
            assert seen[1] == expected[1], f"step {number} {step!r}: public states differ"
            if _refused(expected[0]):
                # A read shows work due by now with ids it makes up (never stored): compare
                # everything else.
                assert _stored(expected[1]) == _stored(previous), (
                    f"step {number} {step!r}: refused, yet changed"
                )
            previous = expected[1]
    finally:
        reference.close()
        other.close()


@pytest.mark.parametrize("call", sorted(BAD_CALLS))
def test_every_bad_call_is_refused_and_changes_nothing(call: str, ids: IdCounter) -> None:
    """Given two customers with usage on MemoryStore, when a bad call of the table runs, then
    it raises an ``AutumnError`` and the public state is what it was (the differential run then
    proves every other store refuses it alike)."""
    # given
    billing, clock = _engine(MemoryStore())
    for step in (("create", "a", EMAILS[0], "fp1"), ("create", "b", None, None)):
        run_step(billing, clock, step)
    billing.track("a", "messages", value=3)
    before = public_state(billing)
    # when
    outcome = run_step(billing, clock, ("bad", call, "a"))
    # then
    assert _refused(outcome), f"{call} was accepted: {outcome!r}"
    assert public_state(billing) == before
