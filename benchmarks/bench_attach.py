"""attach (new, upgrade) with MemoryGateway on MemoryStore: p50 per call.

Run: .venv/bin/python benchmarks/bench_attach.py
Target to report against: attach p50 <= 2 ms (new and upgrade).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _harness import time_calls, write

from autumn_core import Autumn, Catalog, Feature, Item, ManualClock, Price, Product
from autumn_memory import MemoryGateway, MemoryStore

N = 2_000


def build() -> Autumn:
    catalog = Catalog(
        features=[Feature.metered("messages"), Feature.allocated("seats")],
        products=[
            Product(
                "free", default=True, items=[Item.feature("messages", included=100, reset="month")]
            ),
            Product(
                "pro",
                price=Price(20),
                items=[
                    Item.feature("messages", included=1000, reset="month"),
                    Item.priced("seats", included=3, price=10, billing="usage"),
                ],
            ),
            Product(
                "solo", group="solo", price=Price(20), items=[Item.feature("messages", included=10)]
            ),
            Product(
                "premium",
                price=Price(50),
                items=[
                    Item.feature("messages", included=5000, reset="month"),
                    Item.priced("seats", included=5, price=10, billing="usage"),
                ],
            ),
        ],
    )
    return Autumn(catalog, store=MemoryStore(), gateway=MemoryGateway(), clock=ManualClock())


def main() -> None:
    billing = build()
    ids = itertools.count()

    # "new": a customer (created beforehand) gets a paid product of a group it has nothing in.
    def prepare(n: int) -> list[str]:
        out = []
        for _ in range(n):
            cid = f"c{next(ids)}"
            billing.customers.create(cid)
            out.append(cid)
        return out

    new_ids = iter(prepare(N + 200))
    new = time_calls(lambda: billing.attach(next(new_ids), "solo"), n=N)

    # "upgrade": a customer on pro (paid, charged) moves to premium with proration lines.
    up_ids = prepare(N + 200)
    for cid in up_ids:
        billing.attach(cid, "pro")
    up_iter = iter(up_ids)
    upgrade = time_calls(lambda: billing.attach(next(up_iter), "premium"), n=N)

    # A reference from the same run for ``python -m benchmarks`` (attach has no physical floor
    # without a provider): a track on the same engine, the cheapest write through the stack.
    ref = up_ids[0]
    reference = time_calls(lambda: billing.track(ref, "messages"), n=N)

    figures = {
        "attach_new": new,
        "attach_upgrade": upgrade,
        "reference_track": reference,
        "target_p50_us": 2000,
    }
    for name in ("attach_new", "attach_upgrade", "reference_track"):
        f = figures[name]
        assert isinstance(f, dict)
        print(f"{name:16s} p50 {f['p50_us']:8.1f} us   p99 {f['p99_us']:8.1f} us")
    print("written to", write("attach", figures))


if __name__ == "__main__":
    main()
