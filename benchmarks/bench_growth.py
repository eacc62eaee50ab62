"""Growth curves: SQLite and PostgreSQL grown step by step to many customers and events, with
the hot calls, a page, an email lookup, ``process_due`` and the bytes on disk measured at each
size. Flat lines are what a size-independent call should show.

    .venv/bin/python benchmarks/bench_growth.py                          # 1,000 .. 1,000,000
    .venv/bin/python benchmarks/bench_growth.py --sizes 1000,10000,100000 --stores sqlite
    .venv/bin/python benchmarks/bench_growth.py --plot                   # redraw from the JSON

Loading. The customers and events between two sizes are written in bulk through the store's own
write path: ``store.transaction(write=True)`` with ``tx.insert_customer(state)`` and
``tx.append_events(events)``, 2,000 customers (and their events) per transaction. Each state is a
copy of one customer created through the public API (``customers.create``: the default product
attached, its balance row), with fresh pk, id, email, instance and row ids; each event is an
``EventRecord`` as ``track`` writes it. Compared with the public API this skips argument
checks, the unit of work, lazy work, the per-call transaction (2,000 per transaction instead of
one each), the balance deduction of each event, and idempotency records (none are kept). The
rows, columns and indexes written are the store's own, so the bytes and the index depths are
what the public API would produce. After each load PostgreSQL gets an ``ANALYZE`` (what
autovacuum does on a live database; without statistics its planner plans for empty tables).

Measured at each size, through the public API, on customers picked at random (so mostly not in
the store's parsed-customer cache, 10,000 customers): ``customers.create`` rate, ``check`` (and,
as a reference, ``check`` of one customer again and again) and ``track`` p50, a
customers page from the middle (``customers.list(limit=50, starting_after=...)``),
``customers.get_by_email``, ``process_due`` throughput (on customers planted due at this size
through the same bulk path; the others are not due), and the bytes per customer and per event
(SQLite: ``dbstat`` after a WAL checkpoint; PostgreSQL: ``pg_total_relation_size`` after
``VACUUM``; tables named like events count per event, the rest per customer).

Results go to ``results/growth.json`` after every size (a run cut short keeps what it measured)
and the plots to ``results/growth.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from _harness import RESULTS

from autumn_core import Autumn, Catalog, Feature, Item, ManualClock, Product
from autumn_core.model import CustomerState, EventRecord, replace

OUT = RESULTS / "growth.json"
PLOT = RESULTS / "growth.png"
DEFAULT_SIZES = "1000,10000,100000,1000000"
BATCH = 2000
#: Samples per figure at each size.
CHECKS, TRACKS, CREATES, PAGES, EMAILS, DUE = 400, 300, 200, 40, 200, 300
NOW = datetime(2025, 1, 20, tzinfo=UTC)
BORN = datetime(2024, 1, 1, tzinfo=UTC)


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product(
                "free",
                default=True,
                items=[Item.feature("messages", included=10**9, reset="month")],
            )
        ],
    )


# -- stores -------------------------------------------------------------------------------------
#: An engine on the store, its bytes per table, and what settles it after a bulk load.
Engine = tuple[Autumn, Callable[[], dict[str, int]], Callable[[], None]]


@contextmanager
def sqlite_engine(workdir: Path) -> Iterator[Engine]:
    from autumn_sqlite import SqliteStore

    path = workdir / "growth.db"
    store = SqliteStore(path)
    billing = Autumn(catalog(), store=store, clock=ManualClock(NOW))

    def sizes() -> dict[str, int]:
        import sqlite3

        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return {
                n: int(b)
                for n, b in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
            }
        finally:
            conn.close()

    try:
        yield billing, sizes, lambda: None
    finally:
        billing.close()


@contextmanager
def postgres_engine(workdir: Path) -> Iterator[Engine]:
    import psycopg

    from autumn_postgres import PostgresStore
    from tests.pg_cluster import pg_cluster

    # A server sized for a million customers (the test cluster's 128 MB of shared buffers and
    # 1 GB of WAL between checkpoints are sized for test suites); durability stays off as in
    # the test cluster, so the figures show the store, not the disk.
    settings = {"shared_buffers": "2GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min"}
    with pg_cluster(extra_settings=settings) as cluster:
        url = cluster.create_database("growth")
        billing = Autumn(catalog(), store=PostgresStore(url, max_size=2), clock=ManualClock(NOW))

        def sizes() -> dict[str, int]:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM")
                rows = conn.execute(
                    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind = 'r' AND n.nspname = current_schema()"
                ).fetchall()
            return {str(n): int(b) for n, b in rows}

        def settle() -> None:
            # What autovacuum does on a live database after that many inserts: without
            # statistics the planner picks plans for empty tables (and compiles them with JIT).
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")

        try:
            yield billing, sizes, settle
        finally:
            billing.close()


ENGINES: dict[str, Callable[[Path], AbstractContextManager[Engine]]] = {
    "sqlite": sqlite_engine,
    "postgres": postgres_engine,
}


# -- bulk loading -------------------------------------------------------------------------------
class Loader:
    """Copies of one customer made through the public API, written in bulk (module docstring)."""

    def __init__(self, billing: Autumn) -> None:
        self.billing = billing
        billing.customers.create("template", email="template@example.com")
        with billing.store.transaction(write=False) as tx:
            pk = tx.customer_pk("template")
            assert pk is not None
            template = tx.load_customer(pk)
        assert template is not None
        self.template = template
        self.count = 0
        self.events = 0
        self.due_planted = 0
        #: Events written by ``track`` at the measuring steps.
        self.tracked = 0

    def _copy(self, n: int, *, due: bool) -> CustomerState:
        t = self.template
        key = f"{n:08d}"
        cp_ids = {p.instance_id: f"cp_g{key}{i}" for i, p in enumerate(t.products)}
        rows = tuple(
            replace(
                r,
                id=f"row_g{key}{i}",
                cp_id=cp_ids.get(r.cp_id or "", r.cp_id),
                next_reset_at=NOW - timedelta(days=1) if due else r.next_reset_at,
            )
            for i, r in enumerate(t.rows)
        )
        products = tuple(replace(p, instance_id=cp_ids[p.instance_id]) for p in t.products)
        return replace(
            t,
            pk=f"cus_g{key}",
            id=f"c{key}",
            email=f"user{key}@example.com",
            created_at=BORN + timedelta(seconds=n),
            products=products,
            rows=rows,
            version=0,
        )

    def _events(self, state: CustomerState, n: int, per: int) -> list[EventRecord]:
        base = BORN + timedelta(seconds=n)
        out = []
        for j in range(per):
            ts = base + timedelta(microseconds=j)
            micros = int(ts.timestamp() * 1_000_000)
            out.append(
                EventRecord(
                    f"evt_{micros:014x}{random.getrandbits(64):016x}",
                    state.pk,
                    None,
                    "messages",
                    None,
                    Decimal(1),
                    {},
                    ts,
                    ts,
                )
            )
        return out

    def grow(self, to: int, events_per: int) -> tuple[float, float]:
        """Bulk-write customers until there are ``to``; return (customers/s, events/s)."""
        store = self.billing.store
        start, t0 = self.count, time.perf_counter()
        events0 = self.events
        while self.count < to:
            upto = min(to, self.count + BATCH)
            with store.transaction(write=True) as tx:
                batch: list[EventRecord] = []
                for n in range(self.count, upto):
                    state = self._copy(n, due=False)
                    tx.insert_customer(state)
                    batch.extend(self._events(state, n, events_per))
                if batch:
                    tx.append_events(batch)
            self.events += len(batch)
            self.count = upto
        took = max(time.perf_counter() - t0, 1e-9)
        return (self.count - start) / took, (self.events - events0) / took

    def plant_due(self, k: int) -> None:
        """``k`` customers whose monthly reset is a day overdue (numbered apart from the rest)."""
        with self.billing.store.transaction(write=True) as tx:
            for i in range(k):
                tx.insert_customer(self._copy(90_000_000 + self.due_planted + i, due=True))
        self.due_planted += k


# -- measuring ----------------------------------------------------------------------------------
def p50_us(fn: Callable[[], object], args: list[Any]) -> float:
    samples = []
    for a in args:
        t0 = time.perf_counter_ns()
        fn(a)  # type: ignore[call-arg]
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


def measure(loader: Loader, sizes_fn: Callable[[], dict[str, int]], created: int) -> dict[str, Any]:
    b = loader.billing
    rng = random.Random(loader.count)
    pick = lambda k: [f"c{rng.randrange(loader.count):08d}" for _ in range(k)]  # noqa: E731
    figures: dict[str, Any] = {}
    figures["check_p50_us"] = p50_us(lambda c: b.check(c, "messages"), pick(CHECKS))
    # One customer checked again and again: what a check costs once the store has parsed it.
    hot = pick(1)[0]
    figures["check_hot_p50_us"] = p50_us(lambda c: b.check(c, "messages"), [hot] * CHECKS)
    figures["track_p50_us"] = p50_us(lambda c: b.track(c, "messages"), pick(TRACKS))
    loader.tracked += TRACKS
    middle = f"c{loader.count // 2:08d}"
    figures["page_p50_us"] = p50_us(
        lambda c: b.customers.list(limit=50, starting_after=c), [middle] * PAGES
    )
    emails = [f"user{c[1:]}@example.com" for c in pick(EMAILS)]
    figures["email_p50_us"] = p50_us(lambda e: b.customers.get_by_email(e), emails)
    t0 = time.perf_counter()
    for i in range(CREATES):
        b.customers.create(f"new{loader.count:08d}x{i}", email=f"new{loader.count}x{i}@example.com")
    figures["create_per_s"] = CREATES / (time.perf_counter() - t0)
    loader.plant_due(DUE)
    t0 = time.perf_counter()
    done = b.process_due(limit=DUE)
    figures["process_due_per_s"] = done / (time.perf_counter() - t0)
    figures["process_due_done"] = done
    sizes = sizes_fn()
    event_bytes = sum(v for k, v in sizes.items() if "event" in k)
    customer_bytes = sum(v for k, v in sizes.items() if "event" not in k)
    customers = loader.count + created + CREATES + loader.due_planted + 1
    figures["bytes_per_customer"] = customer_bytes / customers
    figures["bytes_per_event"] = event_bytes / max(1, loader.events + loader.tracked)
    figures["bytes_by_table"] = sizes
    figures["customers_total"] = customers
    return figures


def run_store(kind: str, sizes: list[int], events_per: int, results: dict[str, Any]) -> None:
    with (
        tempfile.TemporaryDirectory(dir=os.environ.get("AUTUMN_BENCH_DIR")) as tmp,
        ENGINES[kind](Path(tmp)) as (billing, sizes_fn, settle),
    ):
        loader = Loader(billing)
        points: list[dict[str, Any]] = []
        results[kind] = points
        created = 0
        for size in sizes:
            cps, eps = loader.grow(size, events_per)
            settle()
            figures = measure(loader, sizes_fn, created)
            created += CREATES
            figures.update(
                size=size, events=loader.events, load_customers_per_s=cps, load_events_per_s=eps
            )
            points.append(figures)
            save(results)
            print(
                f"{kind:8} {size:>9,} customers {loader.events:>11,} events | "
                f"check {figures['check_p50_us']:5.0f} us  track {figures['track_p50_us']:5.0f} us  "
                f"page {figures['page_p50_us']:6.0f} us  email {figures['email_p50_us']:5.0f} us  "
                f"create {figures['create_per_s']:5.0f}/s  due {figures['process_due_per_s']:5.0f}/s  "
                f"{figures['bytes_per_customer']:5.0f} B/customer "
                f"{figures['bytes_per_event']:4.0f} B/event  (load {cps:,.0f} customers/s)",
                flush=True,
            )


def save(results: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    out = Path(os.environ.get("AUTUMN_GROWTH_OUT", OUT))
    out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


# -- plotting -----------------------------------------------------------------------------------
PANELS = [
    ("create_per_s", "customers.create per second", "/s"),
    ("check_p50_us", "check p50 (random customer; dashed: the same one)", "us"),
    ("track_p50_us", "track p50", "us"),
    ("page_p50_us", "customers page (50, middle) p50", "us"),
    ("email_p50_us", "get_by_email p50", "us"),
    ("process_due_per_s", "process_due customers per second", "/s"),
    ("bytes_per_customer", "bytes per customer", "B"),
    ("bytes_per_event", "bytes per event", "B"),
]


def plot(results: dict[str, Any], path: Path = PLOT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, (key, title, unit) in zip(axes.flat, PANELS, strict=True):
        for kind, marker in (("sqlite", "o"), ("postgres", "s")):
            points = [p for p in results.get(kind, []) if key in p]
            if points:
                xs = [p["size"] for p in points]
                (line,) = ax.plot(xs, [p[key] for p in points], marker=marker, label=kind)
                if key == "check_p50_us":
                    hot = [p.get("check_hot_p50_us", 0) for p in points]
                    ax.plot(xs, hot, "--", marker=marker, color=line.get_color(), alpha=0.6)
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.set_xlabel("customers (10 events each)")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend()
    meta = results.get("meta", {})
    fig.suptitle(f"Growth curves ({meta.get('note', '')})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--sizes", default=DEFAULT_SIZES, help=f"customers at each step ({DEFAULT_SIZES})"
    )
    ap.add_argument("--events-per-customer", type=int, default=10)
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--plot", action="store_true", help="only redraw the plot from the JSON")
    ap.add_argument(
        "--merge",
        nargs="*",
        default=[],
        help="growth JSON files of separate runs (one store each) to merge into the plot",
    )
    args = ap.parse_args()
    if args.merge:
        merged: dict[str, Any] = {}
        for name in args.merge:
            merged.update(json.loads(Path(name).read_text()))
        save(merged)
    if args.plot or args.merge:
        plot(json.loads(OUT.read_text()))
        print(f"written to {PLOT}")
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    results: dict[str, Any] = {
        "meta": {
            "sizes": sizes,
            "events_per_customer": args.events_per_customer,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "note": f"{args.events_per_customer} events per customer; nice'd on a shared 2-core VM",
        }
    }
    for kind in args.stores.split(","):
        run_store(kind, sizes, args.events_per_customer, results)
        plot(results)
    print(f"written to {OUT} and {PLOT}")


if __name__ == "__main__":
    main()
