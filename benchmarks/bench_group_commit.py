"""Group commit on SQLite: tracks/s of 8 threads of one process on distinct customers, beside
the raw floor of one transaction per track measured in the same run.

The floor is raw ``sqlite3`` on a file with the same pragmas (WAL, ``synchronous=FULL``: every
commit is durable, so every call waits for its own disk sync): ``BEGIN IMMEDIATE``, one balance
UPDATE, one event INSERT, ``COMMIT``, from one thread. The library runs ``track`` through the
public API with group commit (the default) and, for comparison, without it; then 4 processes
(1 and 2 threads each), which SQLite serialises on its file lock: commits are shared only by the
threads of one process.

The 8-thread figure and its floor alternate in ``ROUNDS`` rounds (a disk sync costs from
0.1 to 4 ms on a shared machine, from one second to the next): the figures are the medians
of the rounds, ``threads_ratio_median_of_rounds`` the median of the rounds' ratios.

Run: .venv/bin/python benchmarks/bench_group_commit.py [--seconds 3]
Target: 8 threads >= 1.0x the floor's tracks/s.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _harness import write

from autumn_core import Autumn, Catalog, Feature, Item, Product
from autumn_sqlite import SqliteStore

THREADS = 8
PROCS = 4
#: The 8-thread figure alternates the floor and the library in rounds (a disk sync's cost
#: moves a lot on a shared machine): medians of the rounds, and the median of their ratios.
ROUNDS = 5


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


def engine(path: Path, sync: str, group: bool = True) -> Autumn:
    return Autumn(catalog(), store=SqliteStore(path, synchronous=sync, group_commit=group))


# -- the raw floor ------------------------------------------------------------------------------
def floor(path: Path, sync: str, seconds: float) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE rows (id TEXT PRIMARY KEY, balance TEXT)")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, customer TEXT, value TEXT)")
    conn.execute("INSERT INTO rows VALUES ('r1', '1000000000000')")

    def one() -> None:
        conn.execute("BEGIN IMMEDIATE")
        (bal,) = conn.execute("SELECT balance FROM rows WHERE id = 'r1'").fetchone()
        conn.execute("UPDATE rows SET balance = ? WHERE id = 'r1'", (str(Decimal(bal) - 1),))
        conn.execute("INSERT INTO events (customer, value) VALUES ('c', '1')")
        conn.execute("COMMIT")

    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        one()
        n += 1
    rate = n / (time.perf_counter() - t0)
    conn.close()
    return rate


# -- the library ---------------------------------------------------------------------------------
def threads_rate(billing: Autumn, customers: list[str], seconds: float) -> dict[str, float]:
    counts = [0] * len(customers)
    errors = [0] * len(customers)
    stop = time.perf_counter() + seconds
    start = threading.Barrier(len(customers) + 1)

    def loop(i: int) -> None:
        c = customers[i]
        start.wait()
        while time.perf_counter() < stop:
            try:
                billing.track(c, "messages")
                counts[i] += 1
            except Exception:
                errors[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(customers))]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    return {"per_s": sum(counts) / took, "errors": sum(errors), "tracks": sum(counts)}


def _proc(path: str, sync: str, customers: list[str], seconds: float, gate: Any, out: Any) -> None:
    billing = engine(Path(path), sync)
    gate.wait()
    out.put(threads_rate(billing, customers, seconds))
    billing.close()


def procs_rate(path: Path, sync: str, per_proc: int, seconds: float) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    gate = ctx.Barrier(PROCS)
    out = ctx.Queue()
    groups = [[f"p{p}t{t}" for t in range(per_proc)] for p in range(PROCS)]
    procs = [
        ctx.Process(target=_proc, args=(str(path), sync, g, seconds, gate, out)) for g in groups
    ]
    for p in procs:
        p.start()
    got = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return {
        "per_s": sum(g["per_s"] for g in got),
        "errors": sum(g["errors"] for g in got),
        "tracks": sum(g["tracks"] for g in got),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    s = args.seconds
    figures: dict[str, Any] = {"synchronous": "FULL", "threads": THREADS, "procs": PROCS}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        customers = [f"c{i}" for i in range(THREADS)]
        billing = engine(d / "lib.db", "FULL")
        for c in customers:
            billing.customers.create(c)
        floors, rounds = [], []
        for r in range(ROUNDS):
            floors.append(floor(d / f"raw{r}.db", "FULL", s / ROUNDS * 2))
            rounds.append(threads_rate(billing, customers, s / ROUNDS * 2))
        figures["serial"] = threads_rate(billing, customers[:1], s)
        billing.close()
        ratios = sorted(g["per_s"] / f for g, f in zip(rounds, floors, strict=True))
        figures["floor_serial_per_s"] = statistics.median(floors)
        figures["threads"] = {
            "per_s": statistics.median(g["per_s"] for g in rounds),
            "errors": sum(g["errors"] for g in rounds),
            "tracks": sum(g["tracks"] for g in rounds),
        }
        figures["threads_ratio_median_of_rounds"] = statistics.median(ratios)
        figures["threads_ratio_rounds"] = [round(x, 3) for x in ratios]
        figures["floor_serial_per_s_rounds"] = [round(f) for f in floors]
        figures["floor_serial_per_s_NORMAL"] = floor(d / "raw-n.db", "NORMAL", s)
        for name, sync, group in (("_no_group", "FULL", False), ("_NORMAL", "NORMAL", True)):
            billing = engine(d / f"lib{name}.db", sync, group)
            for c in customers:
                billing.customers.create(c)
            figures[f"serial{name}"] = threads_rate(billing, customers[:1], s)
            figures[f"threads{name}"] = threads_rate(billing, customers, s)
            billing.close()
        for per in (1, 2):
            path = d / f"procs{per}.db"
            setup = engine(path, "FULL")
            for p in range(PROCS):
                for t in range(per):
                    setup.customers.create(f"p{p}t{t}")
            setup.close()
            figures["procs" if per == 1 else f"procs_x{per}"] = procs_rate(path, "FULL", per, s)
    fl = figures["floor_serial_per_s"]
    for key in ("serial", "threads", "serial_no_group", "threads_no_group", "procs", "procs_x2"):
        figures[f"{key}_ratio_to_floor"] = figures[key]["per_s"] / fl
    for key in ("serial_NORMAL", "threads_NORMAL"):
        figures[f"{key}_ratio_to_floor"] = (
            figures[key]["per_s"] / figures["floor_serial_per_s_NORMAL"]
        )
    figures["targets"] = {"threads_ratio_to_floor": 1.0}
    path = write("group_commit", figures)
    rows = [
        ("1 thread", "serial", fl),
        (f"{THREADS} threads, group commit", "threads", fl),
        ("1 thread, no group commit", "serial_no_group", fl),
        (f"{THREADS} threads, no group commit", "threads_no_group", fl),
        (f"{PROCS} processes x 1 thread", "procs", fl),
        (f"{PROCS} processes x 2 threads", "procs_x2", fl),
        ("1 thread, NORMAL", "serial_NORMAL", figures["floor_serial_per_s_NORMAL"]),
        (f"{THREADS} threads, NORMAL", "threads_NORMAL", figures["floor_serial_per_s_NORMAL"]),
    ]
    print(
        f"floor (raw, 1 txn per track): FULL {fl:,.0f}/s, NORMAL "
        f"{figures['floor_serial_per_s_NORMAL']:,.0f}/s"
    )
    for label, key, f in rows:
        g = figures[key]
        print(
            f"{label:32} {g['per_s']:8,.0f}/s  {g['per_s'] / f:5.2f}x floor  errors {g['errors']}"
        )
    print(
        f"8 threads vs floor, median of {ROUNDS} alternating rounds:"
        f" {figures['threads_ratio_median_of_rounds']:.2f}x {figures['threads_ratio_rounds']}"
        f" (floor {figures['floor_serial_per_s_rounds']})"
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
