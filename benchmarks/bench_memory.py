"""check and track on MemoryStore, beside the physical floor: a plain dict lookup plus update.

Run: .venv/bin/python benchmarks/bench_memory.py
Targets to report against: check p50 <= 10 us, track p50 <= 30 us.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _harness import time_calls, write

from autumn_core import Autumn, Catalog, Feature, Item, ManualClock, Product
from autumn_memory import MemoryStore

N = 20_000


def main() -> None:
    catalog = Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product(
                "free",
                default=True,
                items=[Item.feature("messages", included=10**12, reset="month")],
            )
        ],
    )
    billing = Autumn(catalog, store=MemoryStore(), clock=ManualClock())
    billing.customers.create("bench")

    # The floor: what any in-memory implementation must do at least (find the balance,
    # decide, update it), with a dict and Decimal arithmetic.
    balances = {"bench": {"messages": Decimal(10**12)}}
    one = Decimal(1)

    def floor_check() -> bool:
        return balances["bench"]["messages"] >= one

    def floor_track() -> None:
        row = balances["bench"]
        row["messages"] = row["messages"] - one

    figures = {
        "floor_check": time_calls(floor_check, n=N),
        "floor_track": time_calls(floor_track, n=N),
        "check": time_calls(lambda: billing.check("bench", "messages"), n=N),
        "track": time_calls(lambda: billing.track("bench", "messages"), n=N),
    }
    figures["check_ratio_to_floor"] = figures["check"]["p50_us"] / figures["floor_check"]["p50_us"]
    figures["track_ratio_to_floor"] = figures["track"]["p50_us"] / figures["floor_track"]["p50_us"]
    figures["targets"] = {"check_p50_us": 10, "track_p50_us": 30}
    path = write("memory", figures)
    print(f"{'operation':<8} {'p50 us':>9} {'p99 us':>9} {'floor p50':>10} {'ratio':>8} target")
    for op, target in (("check", 10), ("track", 30)):
        f, fl = figures[op], figures[f"floor_{op}"]
        print(
            f"{op:<8} {f['p50_us']:>9.2f} {f['p99_us']:>9.2f} {fl['p50_us']:>10.3f} "
            f"{f['p50_us'] / fl['p50_us']:>7.0f}x <= {target} us"
        )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
