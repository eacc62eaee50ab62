"""Real OS processes on one PostgreSQL database, through the facade (issue 7's proofs).

Each child builds its own ``Autumn`` on its own ``PostgresStore`` (its own pool) over the same
database, as separate application hosts would. Children are started with ``spawn``: nothing is
inherited, every connection is the child's own.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import psycopg
import pytest

from autumn_postgres import PostgresStore
from tests.postgres import _pg_workers as workers

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROCS = 8


def _run(target: Any, args_per_process: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*args, barrier, queue)`` once per entry, all released together by a
    barrier; return their reports."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(args_per_process))
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, start, out)) for args in args_per_process]
    for p in procs:
        p.start()
    try:
        reports = [out.get(timeout=180) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return reports


def _events(url: str, customer_id: str) -> int:
    store = PostgresStore(url)
    try:
        with store.transaction(write=False) as tx:
            pk = tx.customer_pk(customer_id)
            assert pk is not None
            return len(
                tx.list_events(
                    pk, feature_id=None, start=None, end=None, limit=10**7, starting_after=None
                )
            )
    finally:
        store.close()


def _usage(url: str, customer_id: str, included: int = workers.BIG) -> Any:
    with workers.engine(url, included) as billing:
        return billing.customers.get(customer_id).features["messages"].usage


def _hot_customer(url: str, *, naive: bool) -> tuple[list[Any], Any, int]:
    with workers.engine(url) as billing:
        billing.customers.create("hot")
    reports = _run(workers.track_many_times, [(url, "hot", 500, naive)] * PROCS)
    return reports, _usage(url, "hot"), _events(url, "hot")


def test_eight_processes_on_one_hot_customer_lose_nothing(pg_store_url: str) -> None:
    """Given one customer, when 8 processes each call track(1) 500 times on it at once, then
    usage is exactly 4000, there are 4000 events, and no call failed."""
    reports, usage, events = _hot_customer(pg_store_url, naive=False)
    assert [errors for errors, _ in reports] == [[]] * PROCS
    assert usage == 4000
    assert events == 4000


def test_the_naive_read_then_write_track_fails_the_hot_customer_test(pg_store_url: str) -> None:
    """The same race with a track path that reads without a lock and writes back blindly (kept
    only in the test suite) loses updates: the hot-customer test above has teeth."""
    reports, usage, events = _hot_customer(pg_store_url, naive=True)
    assert [errors for errors, _ in reports] == [[]] * PROCS  # silently wrong, not failing
    assert events == 4000  # every call recorded its event...
    assert usage < 4000  # ...but balance updates were lost


def test_eight_processes_on_eight_customers(pg_store_url: str) -> None:
    """Given 8 customers, when 8 processes each track 500 x 1 on their own customer, then each
    customer's usage is exactly 500."""
    ids = [f"c{i}" for i in range(PROCS)]
    with workers.engine(pg_store_url) as billing:
        for cid in ids:
            billing.customers.create(cid)
    reports = _run(workers.track_many_times, [(pg_store_url, cid, 500, False) for cid in ids])
    assert [errors for errors, _ in reports] == [[]] * PROCS
    with workers.engine(pg_store_url) as billing:
        assert [billing.customers.get(c).features["messages"].usage for c in ids] == [500] * PROCS


def test_overdraw_race_gives_exactly_the_balance(pg_store_url: str) -> None:
    """Given a balance of 100, when 8 processes each try 50 x track(1, overage="reject"), then
    exactly 100 are accepted, 300 rejected, and the balance is 0, never below."""
    with workers.engine(pg_store_url, 100) as billing:
        billing.customers.create("poor")
    reports = _run(workers.track_with_reject, [(pg_store_url, "poor", 50)] * PROCS)
    assert [others for _, _, others in reports] == [[]] * PROCS
    assert sum(a for a, _, _ in reports) == 100
    assert sum(r for _, r, _ in reports) == 300
    with workers.engine(pg_store_url, 100) as billing:
        balance = billing.customers.get("poor").features["messages"]
        assert balance.remaining == 0
        assert balance.usage == 100


def test_concurrent_trials_sharing_a_fingerprint_give_one_trial(pg_store_url: str) -> None:
    """Given 8 customers with the same fingerprint, when all attach the product whose trial is
    unique per fingerprint at once, then exactly one of them gets a trial (the others attach
    without one) and one fingerprint claim is stored."""
    ids = [f"fp{i}" for i in range(PROCS)]
    with workers.engine(pg_store_url) as billing:
        for cid in ids:
            billing.customers.create(cid, fingerprint="device-1")
    reports = _run(workers.attach_trial, [(pg_store_url, cid) for cid in ids])
    assert [err for _, err in reports] == [None] * PROCS
    assert sum(1 for trial, _ in reports if trial) == 1
    with psycopg.connect(pg_store_url) as conn:
        row = conn.execute("SELECT count(*) FROM autumn_trial_fingerprint_claims").fetchone()
    assert row is not None and row[0] == 1
