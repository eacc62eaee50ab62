"""track over five stacked rows for one feature vs a single-row track, MemoryStore, same run.

The stacked customer's ``words`` has: a main monthly row carrying a rollover, an add-on row,
a loose grant (``balances.grant``), and two credit systems listing ``words`` (five rows, plus
the rollover, which R6 spends first). The single-row customer is the foundation benchmark's:
one monthly ``messages`` row.

Run: .venv/bin/python benchmarks/bench_stacked.py
Target: stacked p50 <= 2x single-row p50. Writes benchmarks/results/stacked.json.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _harness import time_calls, write

from autumn_core import (
    Autumn,
    Catalog,
    Feature,
    Item,
    ManualClock,
    Product,
    Rollover,
)
from autumn_memory import MemoryStore

N = 20_000
BIG = 10**12


def catalog() -> Catalog:
    return Catalog(
        features=[
            Feature.metered("messages"),
            Feature.metered("words"),
            Feature.credit_system("credits_a", costs={"words": 1}),
            Feature.credit_system("credits_b", costs={"words": "2.5"}),
        ],
        products=[
            Product("single", items=[Item.feature("messages", included=BIG, reset="month")]),
            Product(
                "main",
                items=[Item.feature("words", included=BIG, reset="month", rollover=Rollover())],
            ),
            Product("addon", add_on=True, items=[Item.feature("words", included=BIG)]),
            Product("pool_a", add_on=True, items=[Item.feature("credits_a", included=BIG)]),
            Product("pool_b", add_on=True, items=[Item.feature("credits_b", included=BIG)]),
        ],
    )


def build() -> Autumn:
    clock = ManualClock(datetime(2025, 1, 15, tzinfo=UTC))
    billing = Autumn(catalog(), store=MemoryStore(), clock=clock)
    billing.attach("one", "single")
    for product in ("main", "addon", "pool_a", "pool_b"):
        billing.attach("stacked", product)
    billing.track("stacked", "words", value=BIG // 2)
    clock.advance(days=32)  # the monthly reset turns the unused half into a rollover (RO1)
    billing.balances.grant("stacked", "words", BIG)
    b = billing.customers.get("stacked").features["words"]
    assert len(b.breakdown) == 3 and len(b.rollovers) == 1, b
    considered = billing.track("stacked", "words", value=0).balances
    assert set(considered) == {"words", "credits_a", "credits_b"}, considered
    return billing


def main() -> None:
    billing = build()
    single = time_calls(lambda: billing.track("one", "messages"), n=N, warmup=2000)
    stacked = time_calls(lambda: billing.track("stacked", "words"), n=N, warmup=2000)
    check_single = time_calls(lambda: billing.check("one", "messages"), n=N, warmup=2000)
    check_stacked = time_calls(lambda: billing.check("stacked", "words"), n=N, warmup=2000)
    figures = {
        "track_single_row": single,
        "track_five_rows": stacked,
        "check_single_row": check_single,
        "check_five_rows": check_stacked,
        "track_ratio": stacked["p50_us"] / single["p50_us"],
        "check_ratio": check_stacked["p50_us"] / check_single["p50_us"],
        "targets": {"ratio": 2, "check_p50_us": 10, "track_p50_us": 30},
    }
    path = write("stacked", figures)
    print(f"{'operation':<10} {'single p50':>11} {'5 rows p50':>11} {'ratio':>7}  target")
    for op in ("track", "check"):
        one, five = figures[f"{op}_single_row"], figures[f"{op}_five_rows"]
        print(
            f"{op:<10} {one['p50_us']:>9.2f}us {five['p50_us']:>9.2f}us "
            f"{five['p50_us'] / one['p50_us']:>6.2f}x  <= 2x"
        )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
