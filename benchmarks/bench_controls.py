"""Reserve and finalize beside a plain track, in the same run, on each store.

Run: .venv/bin/python benchmarks/bench_controls.py [memory sqlite postgres]
Figure: p50 of ``check(lock=...)`` + ``balances.finalize(confirm)`` over p50 of one ``track``
(the work a reservation replaces). Target: at most 2x. Also: a track under billing controls
(a usage limit, a spend limit and an alert) over a plain track.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from _harness import time_calls, write

from autumn_core import Autumn, Catalog, Feature, Item, ManualClock, Product
from autumn_core.ports import Store

N = {"memory": 5_000, "sqlite": 2_000, "postgres": 1_000}
BIG = 10**12


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("tokens"), Feature.metered("controlled")],
        products=[
            Product(
                "free",
                default=True,
                items=[
                    Item.feature("tokens", included=BIG, reset="month"),
                    Item.feature("controlled", included=BIG, reset="month"),
                ],
            )
        ],
    )


def measure(kind: str, store: Store) -> dict[str, Any]:
    billing = Autumn(catalog(), store=store, clock=ManualClock())
    billing.customers.create("plain")
    billing.customers.create(
        "ctl",
        billing_controls={
            "usage_limits": [{"feature_id": "controlled", "limit": BIG, "interval": "day"}],
            "spend_limits": [{"feature_id": "controlled", "enabled": True, "overage_limit": 10}],
            "usage_alerts": [
                {"feature_id": "controlled", "threshold": 99, "threshold_type": "usage_percentage"}
            ],
        },
    )
    ids = itertools.count()

    def reserve_and_finalize() -> None:
        lock_id = f"l{next(ids)}"
        billing.check("plain", "tokens", required_balance=5, lock={"lock_id": lock_id})
        billing.balances.finalize(lock_id, "confirm", override_value=3)

    n = N[kind]
    figures = {
        "track": time_calls(lambda: billing.track("plain", "tokens", value=3), n=n, warmup=100),
        "lock_finalize": time_calls(reserve_and_finalize, n=n, warmup=100),
        "controlled_track": time_calls(
            lambda: billing.track("ctl", "controlled", value=3), n=n, warmup=100
        ),
    }
    figures["lock_finalize_ratio"] = figures["lock_finalize"]["p50_us"] / figures["track"]["p50_us"]
    figures["controlled_track_ratio"] = (
        figures["controlled_track"]["p50_us"] / figures["track"]["p50_us"]
    )
    billing.close()
    return figures


def main(kinds: list[str]) -> None:
    out: dict[str, Any] = {"target_lock_finalize_ratio": 2.0}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            if kind == "memory":
                from autumn_memory import MemoryStore

                out[kind] = measure(kind, MemoryStore())
            elif kind == "sqlite":
                from autumn_sqlite import SqliteStore

                out[kind] = measure(kind, SqliteStore(Path(tmp) / "bench.db"))
            else:
                from autumn_postgres import PostgresStore
                from tests.pg_cluster import pg_cluster

                with pg_cluster() as cluster:
                    url = cluster.create_database("bench")
                    out[kind] = measure(kind, PostgresStore(url))
    path = write("controls", out)
    print(
        f"{'store':<9} {'track p50':>10} {'lock+fin p50':>13} {'ratio':>6} {'ctl track':>10} ratio"
    )
    for kind in kinds:
        f = out[kind]
        print(
            f"{kind:<9} {f['track']['p50_us']:>8.1f}us {f['lock_finalize']['p50_us']:>11.1f}us"
            f" {f['lock_finalize_ratio']:>6.2f} {f['controlled_track']['p50_us']:>8.1f}us"
            f" {f['controlled_track_ratio']:>5.2f}"
        )
    print(f"written to {path}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["memory", "sqlite", "postgres"])
