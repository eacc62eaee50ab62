"""Concurrent reservations on one balance never hold more than it has (docs/rules.md BC5)."""

from __future__ import annotations

import multiprocessing
import threading
from decimal import Decimal
from typing import Any

from autumn_core import Autumn
from tests.conftest import needs
from tests.controls._workers import reserve


def test_bc5_threads_racing_for_holds_never_exceed_the_balance(billing: Autumn) -> None:
    # given 1000 tokens, and 8 threads each asking 10 times for a hold of 30
    billing.customers.create("u1")
    granted: list[str] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        start.wait()
        for i in range(10):
            lock_id = f"t{t}-{i}"
            r = billing.check("u1", "tokens", required_balance=30, lock={"lock_id": lock_id})
            if r.allowed:
                granted.append(lock_id)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # then exactly 33 holds fit (990), and the balance shows them
    tokens = billing.customers.get("u1").features["tokens"]
    assert len(granted) == 33
    assert (tokens.held, tokens.remaining) == (Decimal(990), Decimal(10))

    # and finalizing them all from threads charges each once
    def settle(ids: list[str]) -> None:
        for lock_id in ids:
            billing.balances.finalize(lock_id, "confirm", override_value=20)
            billing.balances.finalize(lock_id, "confirm", override_value=20)

    halves = [granted[::2], granted[1::2]]
    settlers = [threading.Thread(target=settle, args=(h,)) for h in halves + halves]
    for th in settlers:
        th.start()
    for th in settlers:
        th.join()
    tokens = billing.customers.get("u1").features["tokens"]
    assert (tokens.held, tokens.usage) == (Decimal(0), Decimal(660))
    assert len(billing.events.list("u1")) == 33


def test_bc5_processes_racing_for_holds_never_exceed_the_balance(
    billing: Autumn, store_url: Any
) -> None:
    needs(billing.store, multi_process=True)
    billing.customers.create("u1")
    url = store_url(billing)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    out = ctx.Queue()
    procs = [ctx.Process(target=reserve, args=(url, f"p{p}", 10, 40, start, out)) for p in range(4)]
    for p in procs:
        p.start()
    granted = [lock_id for _ in procs for lock_id in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    tokens = billing.customers.get("u1").features["tokens"]
    assert len(granted) == 25  # 25 x 40 = 1000
    assert (tokens.held, tokens.remaining) == (Decimal(1000), Decimal(0))


def test_bc5_threads_reserving_one_lock_id_hold_it_once(billing: Autumn) -> None:
    # given 1000 tokens, and 8 threads reserving 30 under the same lock id at once
    billing.customers.create("u1")
    answers: list[Any] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        answers.append(
            billing.check("u1", "tokens", required_balance=30, lock={"lock_id": "shared"})
        )

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # then every call answers the one hold, and it is held once
    assert [(a.allowed, a.lock_id) for a in answers] == [(True, "shared")] * 8
    tokens = billing.customers.get("u1").features["tokens"]
    assert (tokens.held, tokens.remaining) == (Decimal(30), Decimal(970))
    # and one confirm charges it once
    billing.balances.finalize("shared", "confirm")
    tokens = billing.customers.get("u1").features["tokens"]
    assert (tokens.held, tokens.usage) == (Decimal(0), Decimal(30))
