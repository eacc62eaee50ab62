"""PostgreSQL store figures, each beside the raw psycopg floor measured in the same run.

A throwaway cluster is started for the run (tests/pg_cluster.py; fsync off for both sides, so
the comparison measures the engine, not the disk). The floor issues the same statements a call
needs, without the library: check = one SELECT of a balance; track = one transaction that locks
the customer row, updates one balance row and inserts one event (five round trips; a second,
pipelined floor sends the same statements in two round trips, as the library does).

Run: .venv/bin/python benchmarks/bench_postgres.py [--statements]
(``--statements`` loads pg_stat_statements and prints the server time per statement of the
library during the hot-customer run; it does not change the figures' meaning but costs a little.)
Targets: check p50 <= 0.5 ms; track >= 50% of the raw floor.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import psycopg
from _harness import time_calls, write

from autumn_core import Autumn, Catalog, Feature, Item, Product
from autumn_postgres import PostgresStore
from tests.pg_cluster import pg_cluster

TRACKS = 1500
PROCS = 4
PER_PROC = 400
#: The hot-customer figure alternates the library and the floor in rounds of PER_PROC // 2
#: tracks per process (a shared 2-core machine moves from one second to the next): medians
#: of the rounds, and the median of the rounds' ratios.
HOT_ROUNDS = 5


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product(
                "free",
                default=True,
                items=[Item.feature("messages", included=10**12, reset="month")],
            )
        ],
    )


def engine(url: str) -> Autumn:
    return Autumn(catalog(), store=PostgresStore(url, max_size=2))


RAW_SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_customers (id text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS raw_rows (id text PRIMARY KEY, customer text, balance numeric);
CREATE TABLE IF NOT EXISTS raw_events (id bigserial PRIMARY KEY, customer text, value numeric,
                                       ts timestamptz);
"""


def raw_setup(url: str, customers: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RAW_SCHEMA)
        for c in customers:
            conn.execute("INSERT INTO raw_customers VALUES (%s) ON CONFLICT DO NOTHING", (c,))
            conn.execute(
                "INSERT INTO raw_rows VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (f"r-{c}", c, Decimal(10**12)),
            )


def raw_check(conn: psycopg.Connection[Any], customer: str) -> bool:
    (bal,) = conn.execute(
        "SELECT balance FROM raw_rows WHERE customer = %s", (customer,), prepare=True
    ).fetchone()  # type: ignore[misc]
    return bool(bal >= 1)


def raw_track(conn: psycopg.Connection[Any], customer: str) -> None:
    with conn.transaction():
        conn.execute(
            "SELECT id FROM raw_customers WHERE id = %s FOR UPDATE", (customer,), prepare=True
        )
        conn.execute(
            "UPDATE raw_rows SET balance = balance - 1 WHERE id = %s",
            (f"r-{customer}",),
            prepare=True,
        )
        conn.execute(
            "INSERT INTO raw_events (customer, value, ts) VALUES (%s, 1, now())",
            (customer,),
            prepare=True,
        )


def raw_track_pipelined(conn: psycopg.Connection[Any], customer: str) -> None:
    """The same statements in psycopg's pipeline mode: two round trips, as the library does."""
    with conn.pipeline():
        conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        conn.execute(
            "SELECT id FROM raw_customers WHERE id = %s FOR UPDATE", (customer,), prepare=True
        ).fetchone()
        conn.execute(
            "UPDATE raw_rows SET balance = balance - 1 WHERE id = %s",
            (f"r-{customer}",),
            prepare=True,
        )
        conn.execute(
            "INSERT INTO raw_events (customer, value, ts) VALUES (%s, 1, now())",
            (customer,),
            prepare=True,
        )
        conn.execute("COMMIT")


def per_second(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def _worker(url: str, customer: str, n: int, raw: bool, gate: Any, out: Any) -> None:
    worst = 0.0
    if raw:
        conn = psycopg.connect(url, autocommit=True)

        def call() -> None:
            raw_track(conn, customer)
    else:
        billing = engine(url)

        def call() -> None:
            billing.track(customer, "messages")

    call()  # connected and warm before the clock starts
    gate.wait()  # every process starts together: the figure is 4 at once, not staggered
    t0 = time.perf_counter()
    errors = 0
    for _ in range(n):
        s = time.perf_counter()
        try:
            call()
        except Exception:
            errors += 1
        worst = max(worst, time.perf_counter() - s)
    out.put((n, time.perf_counter() - t0, worst, errors))


def parallel(
    url: str, customers: list[str], raw: bool, per_proc: int = PER_PROC
) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    gate = ctx.Barrier(len(customers))
    procs = [ctx.Process(target=_worker, args=(url, c, per_proc, raw, gate, q)) for c in customers]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return {
        "per_s": sum(r[0] for r in results) / max(r[1] for r in results),
        "worst_ms": max(r[2] for r in results) * 1000,
        "errors": sum(r[3] for r in results),
    }


STATEMENTS_SQL = """
SELECT s.calls, s.mean_exec_time * 1000, s.total_exec_time * 1000, s.query
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = 'bench' AND s.query NOT LIKE %s AND s.calls >= %s
ORDER BY s.total_exec_time DESC
"""


def statement_times(url: str, calls: int) -> list[dict[str, Any]]:
    """Server time per library statement since the last reset (pg_stat_statements)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(STATEMENTS_SQL, ("%raw_%", calls)).fetchall()
    return [
        {
            "calls": int(c),
            "mean_us": float(m),
            "total_ms": float(t) / 1000,
            "query": " ".join(q.split()),
        }
        for c, m, t, q in rows
    ]


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The rounds of one figure: median rate, worst latency and errors over all of them."""
    return {
        "per_s": statistics.median(r["per_s"] for r in runs),
        "worst_ms": max(r["worst_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }


def main() -> None:
    figures: dict[str, Any] = {}
    stats = "--statements" in sys.argv[1:]
    settings = (
        {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}
        if stats
        else {}
    )
    with pg_cluster(extra_settings=settings) as cluster:
        url = cluster.create_database("bench")
        if stats:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        distinct = [f"c{i}" for i in range(PROCS)]
        raw_setup(url, ["bench", "hot", *distinct])
        billing = engine(url)
        for c in ["bench", "hot", *distinct]:
            billing.customers.create(c)
        raw = psycopg.connect(url, autocommit=True)
        figures["floor_check"] = time_calls(lambda: raw_check(raw, "bench"), n=3000)
        figures["check"] = time_calls(lambda: billing.check("bench", "messages"), n=3000)
        figures["floor_track_per_s"] = per_second(lambda: raw_track(raw, "bench"), TRACKS)
        figures["floor_pipelined_track_per_s"] = per_second(
            lambda: raw_track_pipelined(raw, "bench"), TRACKS
        )
        if stats:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
        figures["track_per_s"] = per_second(lambda: billing.track("bench", "messages"), TRACKS)
        if stats:
            figures["track_statements"] = statement_times(url, TRACKS // 2)
        billing.close()
        if stats:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
        hot, floor_hot = [], []
        for _ in range(HOT_ROUNDS):
            hot.append(parallel(url, ["hot"] * PROCS, raw=False, per_proc=PER_PROC // 2))
            floor_hot.append(parallel(url, ["hot"] * PROCS, raw=True, per_proc=PER_PROC // 2))
        if stats:
            figures["hot_4proc_statements"] = statement_times(url, PROCS * PER_PROC // 4)
        figures["hot_4proc"] = _median_run(hot)
        figures["floor_hot_4proc"] = _median_run(floor_hot)
        ratios = sorted(h["per_s"] / f["per_s"] for h, f in zip(hot, floor_hot, strict=True))
        figures["hot_4proc_ratio_median_of_rounds"] = statistics.median(ratios)
        figures["hot_4proc_ratio_rounds"] = [round(r, 3) for r in ratios]
        figures["distinct_4proc"] = parallel(url, distinct, raw=False)
        figures["floor_distinct_4proc"] = parallel(url, distinct, raw=True)
        check = engine(url)
        figures["hot_usage_after"] = str(check.customers.get("hot").features["messages"].usage)
        check.close()
    figures["check_ratio_to_floor"] = figures["check"]["p50_us"] / figures["floor_check"]["p50_us"]
    figures["track_ratio_to_floor"] = figures["track_per_s"] / figures["floor_track_per_s"]
    figures["track_ratio_to_pipelined_floor"] = (
        figures["track_per_s"] / figures["floor_pipelined_track_per_s"]
    )
    for k in ("hot_4proc", "distinct_4proc"):
        figures[f"{k}_ratio_to_floor"] = figures[k]["per_s"] / figures[f"floor_{k}"]["per_s"]
    figures["targets"] = {"check_p50_us": 500, "track_ratio_to_floor": 0.5}
    path = write("postgres", figures)
    rows = [
        "| figure | library | floor (raw psycopg) | ratio | target |",
        "|---|---|---|---|---|",
        f"| check p50 | {figures['check']['p50_us']:.0f} us (p99 {figures['check']['p99_us']:.0f}) | "
        f"{figures['floor_check']['p50_us']:.0f} us | {figures['check_ratio_to_floor']:.1f}x | <= 500 us |",
        f"| track/s, one connection | {figures['track_per_s']:,.0f} | {figures['floor_track_per_s']:,.0f} | "
        f"{figures['track_ratio_to_floor']:.0%} | >= 50% |",
        f"| track/s, vs pipelined floor | {figures['track_per_s']:,.0f} | "
        f"{figures['floor_pipelined_track_per_s']:,.0f} | "
        f"{figures['track_ratio_to_pipelined_floor']:.0%} | (information) |",
    ]
    for k, label in (
        ("distinct_4proc", "4 processes, distinct customers"),
        ("hot_4proc", "4 processes, one hot customer"),
    ):
        f, fl = figures[k], figures[f"floor_{k}"]
        rows.append(
            f"| {label} | {f['per_s']:,.0f}/s (worst {f['worst_ms']:.0f} ms, {f['errors']} errors) | "
            f"{fl['per_s']:,.0f}/s | {figures[f'{k}_ratio_to_floor']:.0%} | >= 50% |"
        )
    print("\n".join(rows))
    for key in ("track_statements", "hot_4proc_statements"):
        if key in figures:
            print(f"server time per statement, {key.removesuffix('_statements')}:")
        for st in figures.get(key, []):
            print(
                f"{st['calls']:>6} x {st['mean_us']:7.1f} us = {st['total_ms']:6.1f} ms"
                f"  {st['query'][:100]}"
            )
    print(
        f"one hot customer, median of {HOT_ROUNDS} alternating rounds:"
        f" {figures['hot_4proc_ratio_median_of_rounds']:.0%} {figures['hot_4proc_ratio_rounds']}"
    )
    print(
        f"hot customer usage after {HOT_ROUNDS} x {PROCS} x ({PER_PROC // 2} + 1 warm-up):"
        f" {figures['hot_usage_after']}"
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
