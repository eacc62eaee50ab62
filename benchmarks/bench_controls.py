"""Reserve and finalize beside a plain track, in the same run, on each store.

Run: .venv/bin/python benchmarks/bench_controls.py [memory sqlite postgres]
Figure: p50 of ``check(lock=...)`` + ``balances.finalize(confirm)`` over p50 of one ``track``
(the work a reservation replaces). Target: at most 2x. Also: a track under billing controls
(a usage limit, a spend limit and an alert) over a plain track.

On SQLite and PostgreSQL it also measures the raw floor of the same comparison (no library):
a reservation is two write transactions (the hold, then the settlement with its event) where a
track is one, so ``raw_floor.receipt_pair_ratio`` is what a library with no overhead of its own
would show. ``bare`` keeps no lock record at all (only the balance moves twice); ``receipt``
adds the least a lock needs: a small row claimed by the hold and marked by the settlement.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from _harness import time_calls, write

from autumn_core import Autumn, Catalog, Feature, Item, ManualClock, Product
from autumn_core.ports import Store

N = {"memory": 5_000, "sqlite": 2_000, "postgres": 1_000}
RAW_N = 3_000
#: The raw floors alternate a raw track and the two pairs in this many rounds.
ROUNDS = 10
BIG = 10**12
#: Locks held open on the "busy" customer while its tracks and reservations are timed: the
#: in-flight requests of one customer of an AI workload.
OPEN_LOCKS = 100


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


LIMITED: dict[str, Any] = {
    "usage_limits": [{"feature_id": "controlled", "limit": BIG, "interval": "day"}],
    "spend_limits": [{"feature_id": "controlled", "enabled": True, "overage_limit": 10}],
    "usage_alerts": [
        {"feature_id": "controlled", "threshold": 99, "threshold_type": "usage_percentage"}
    ],
}


def _busy(billing: Autumn) -> None:
    """The customers with OPEN_LOCKS locks open: "busy" (plain), "busy-ctl" (controlled)."""
    billing.customers.create("busy")
    billing.customers.create("busy-ctl", billing_controls=LIMITED)
    for i in range(OPEN_LOCKS):
        billing.check("busy", "tokens", required_balance=1, lock={"lock_id": f"open-{i}"})
        billing.check("busy-ctl", "controlled", required_balance=1, lock={"lock_id": f"ctl-{i}"})


def measure(kind: str, store: Store, pglz: Store | None = None) -> dict[str, Any]:
    """``pglz``: a PostgreSQL store whose customer heads are compressed as before schema 3
    (pglz): its busy calls are timed beside the store's own (lz4)."""
    billing = Autumn(catalog(), store=store, clock=ManualClock())
    billing.customers.create("plain")
    billing.customers.create("ctl", billing_controls=LIMITED)
    _busy(billing)
    ids = itertools.count()

    def reserve_and_finalize(customer: str = "plain", on: Autumn = billing) -> None:
        lock_id = f"l{next(ids)}"
        on.check(customer, "tokens", required_balance=5, lock={"lock_id": lock_id})
        on.balances.finalize(lock_id, "confirm", override_value=3)

    calls: dict[str, Callable[[], object]] = {
        "track": lambda: billing.track("plain", "tokens", value=3),
        "lock_finalize": reserve_and_finalize,
        "controlled_track": lambda: billing.track("ctl", "controlled", value=3),
        "busy_track": lambda: billing.track("busy", "tokens", value=3),
        "busy_lock_finalize": lambda: reserve_and_finalize("busy"),
        "busy_controlled_track": lambda: billing.track("busy-ctl", "controlled", value=3),
    }
    old: Autumn | None = None
    if pglz is not None:
        old = Autumn(catalog(), store=pglz, clock=ManualClock())
        _busy(old)
        before = old
        calls["pglz_busy_lock_finalize"] = lambda: reserve_and_finalize("busy", before)
        calls["pglz_busy_controlled_track"] = lambda: before.track(
            "busy-ctl", "controlled", value=3
        )
    for call in calls.values():
        for _ in range(100):
            call()
    figures: dict[str, Any] = _rounds(calls, N[kind] // ROUNDS)
    figures["lock_finalize_ratio"] = figures["lock_finalize"]["p50_us"] / figures["track"]["p50_us"]
    figures["controlled_track_ratio"] = (
        figures["controlled_track"]["p50_us"] / figures["track"]["p50_us"]
    )
    # With OPEN_LOCKS locks open beside them, over the same calls on a customer with none.
    figures["busy_track_ratio"] = figures["busy_track"]["p50_us"] / figures["track"]["p50_us"]
    figures["busy_lock_finalize_ratio"] = (
        figures["busy_lock_finalize"]["p50_us"] / figures["lock_finalize"]["p50_us"]
    )
    figures["busy_controlled_track_ratio"] = (
        figures["busy_controlled_track"]["p50_us"] / figures["controlled_track"]["p50_us"]
    )
    if old is not None:
        for name in ("busy_lock_finalize", "busy_controlled_track"):
            figures[f"{name}_lz4_vs_pglz"] = (
                figures[name]["p50_us"] / figures[f"pglz_{name}"]["p50_us"]
            )
        old.close()
    billing.close()
    return figures


def _rounds(calls: dict[str, Callable[[], object]], n: int) -> dict[str, dict[str, float]]:
    """Each call ``n`` times per round, the calls in turn, over ROUNDS rounds (so that the
    machine's drift hits them alike); per call, the medians of the rounds' p50 and p99."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, call in calls.items():
            samples[name].append(time_calls(call, n=n, warmup=20))
    return {
        name: {
            "p50_us": statistics.median(s["p50_us"] for s in runs),
            "p99_us": statistics.median(s["p99_us"] for s in runs),
            "n": n * ROUNDS,
        }
        for name, runs in samples.items()
    }


# -- the raw floors ---------------------------------------------------------------------------
def raw_floor(path: Path) -> dict[str, Any]:
    """Raw ``sqlite3`` (WAL, NORMAL, as the store): a track beside the two transactions of a
    reservation, interleaved in rounds so that drift hits both alike."""
    from bench_sqlite import raw_db, raw_track

    conn = raw_db(path, "NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS receipts"
        " (id TEXT PRIMARY KEY, customer TEXT, held TEXT, status TEXT) WITHOUT ROWID"
    )
    ids = itertools.count()

    def hold(receipt: bool) -> str:
        lock_id = f"l{next(ids):09d}"
        conn.execute("BEGIN IMMEDIATE")
        (bal,) = conn.execute("SELECT balance FROM rows WHERE id = 'r1'").fetchone()
        conn.execute("UPDATE rows SET balance = ? WHERE id = 'r1'", (str(Decimal(bal) - 5),))
        if receipt:
            conn.execute("INSERT INTO receipts VALUES (?, 'bench', '5', 'held')", (lock_id,))
        conn.execute("COMMIT")
        return lock_id

    def settle(lock_id: str, receipt: bool) -> None:
        conn.execute("BEGIN IMMEDIATE")
        if receipt:
            # The least a settlement does with its receipt: mark it and read it in one go.
            conn.execute(
                "UPDATE receipts SET status = 'confirmed' WHERE id = ? RETURNING held", (lock_id,)
            ).fetchone()
        (bal,) = conn.execute("SELECT balance FROM rows WHERE id = 'r1'").fetchone()
        conn.execute("UPDATE rows SET balance = ? WHERE id = 'r1'", (str(Decimal(bal) + 2),))
        conn.execute(
            "INSERT INTO events (customer, value, ts) VALUES ('bench', '3', '2025-01-01T00:00:00+00:00')"
        )
        conn.execute("COMMIT")

    figures = _interleaved(lambda: raw_track(conn), hold, settle, RAW_N // ROUNDS)
    conn.close()
    return figures


def raw_floor_pg(url: str) -> dict[str, Any]:
    """The same raw floor on PostgreSQL, in pipeline mode as the store talks (bench_postgres's
    pipelined track): the hold, then the settlement reading the receipt under the customer's
    row lock and marking it, each transaction one pipelined round trip."""
    import psycopg
    from bench_postgres import raw_setup, raw_track_pipelined

    raw_setup(url, ["bench"])
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS raw_receipts"
        " (id text PRIMARY KEY, customer text, held numeric, status text)"
    )
    ids = itertools.count()

    def hold(receipt: bool) -> str:
        lock_id = f"l{next(ids):09d}"
        with conn.pipeline():
            conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            conn.execute(
                "SELECT id FROM raw_customers WHERE id = 'bench' FOR UPDATE", prepare=True
            ).fetchone()
            conn.execute(
                "UPDATE raw_rows SET balance = balance - 5 WHERE id = 'r-bench'", prepare=True
            )
            if receipt:
                conn.execute(
                    "INSERT INTO raw_receipts VALUES (%s, 'bench', 5, 'held')",
                    (lock_id,),
                    prepare=True,
                )
            conn.execute("COMMIT")
        return lock_id

    def settle(lock_id: str, receipt: bool) -> None:
        with conn.pipeline():
            conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            if receipt:
                conn.execute(
                    "SELECT r.held FROM raw_receipts AS r JOIN raw_customers AS c"
                    " ON c.id = r.customer WHERE r.id = %s FOR UPDATE OF c",
                    (lock_id,),
                    prepare=True,
                ).fetchone()
            else:
                conn.execute(
                    "SELECT id FROM raw_customers WHERE id = 'bench' FOR UPDATE", prepare=True
                ).fetchone()
            conn.execute(
                "UPDATE raw_rows SET balance = balance + 2 WHERE id = 'r-bench'", prepare=True
            )
            conn.execute(
                "INSERT INTO raw_events (customer, value, ts) VALUES ('bench', 3, now())",
                prepare=True,
            )
            if receipt:
                conn.execute(
                    "UPDATE raw_receipts SET status = 'confirmed' WHERE id = %s",
                    (lock_id,),
                    prepare=True,
                )
            conn.execute("COMMIT")

    figures = _interleaved(
        lambda: raw_track_pipelined(conn, "bench"), hold, settle, N["postgres"] // ROUNDS
    )
    conn.close()
    return figures


def _interleaved(
    track: Callable[[], object],
    hold: Callable[[bool], str],
    settle: Callable[[str, bool], None],
    n: int,
) -> dict[str, Any]:
    """A raw track, the bare pair and the receipt pair, ``n`` calls each per round, over ROUNDS
    rounds; the medians of the rounds' p50s."""
    samples: dict[str, list[float]] = {"track": [], "bare": [], "receipt": []}
    for _ in range(ROUNDS):
        samples["track"].append(time_calls(track, n=n, warmup=20)["p50_us"])
        samples["bare"].append(
            time_calls(lambda: settle(hold(False), False), n=n, warmup=20)["p50_us"]
        )
        samples["receipt"].append(
            time_calls(lambda: settle(hold(True), True), n=n, warmup=20)["p50_us"]
        )
    track = statistics.median(samples["track"])
    bare = statistics.median(samples["bare"])
    receipt = statistics.median(samples["receipt"])
    return {
        "track_p50_us": track,
        "bare_pair_p50_us": bare,
        "receipt_pair_p50_us": receipt,
        "bare_pair_ratio": bare / track,
        "receipt_pair_ratio": receipt / track,
    }


def pglz_store(cluster: Any) -> Store:
    """A PostgreSQL store whose customer heads TOAST with pglz, as before schema 3."""
    import psycopg

    from autumn_postgres import PostgresStore

    url = cluster.create_database("bench_pglz")
    store = PostgresStore(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE autumn_customers ALTER COLUMN head SET COMPRESSION pglz")
    return store


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
                out[kind]["raw_floor"] = raw_floor(Path(tmp) / "raw.db")
            else:
                from autumn_postgres import PostgresStore
                from tests.pg_cluster import pg_cluster

                with pg_cluster() as cluster:
                    url = cluster.create_database("bench")
                    out[kind] = measure(kind, PostgresStore(url), pglz_store(cluster))
                    out[kind]["raw_floor"] = raw_floor_pg(url)
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
    print(f"with {OPEN_LOCKS} locks open on the customer, over the same call with none:")
    for kind in kinds:
        f = out[kind]
        print(
            f"  {kind:<9} track {f['busy_track']['p50_us']:.1f}us"
            f" ({f['busy_track_ratio']:.2f}x), lock+finalize"
            f" {f['busy_lock_finalize']['p50_us']:.1f}us ({f['busy_lock_finalize_ratio']:.2f}x),"
            f" track under controls {f['busy_controlled_track']['p50_us']:.1f}us"
            f" ({f['busy_controlled_track_ratio']:.2f}x)"
        )
    for kind in kinds:
        if "raw_floor" not in out[kind]:
            continue
        raw = out[kind]["raw_floor"]
        print(
            f"raw {kind}: track {raw['track_p50_us']:.1f}us, two transactions"
            f" {raw['bare_pair_p50_us']:.1f}us ({raw['bare_pair_ratio']:.2f}x),"
            f" with a lock receipt {raw['receipt_pair_p50_us']:.1f}us"
            f" ({raw['receipt_pair_ratio']:.2f}x)"
        )
    if "postgres" in out and "busy_lock_finalize_lz4_vs_pglz" in out["postgres"]:
        f = out["postgres"]
        print(
            "postgres heads in lz4 over pglz, beside 100 open locks: lock+finalize"
            f" {f['busy_lock_finalize_lz4_vs_pglz']:.2f}x, track under controls"
            f" {f['busy_controlled_track_lz4_vs_pglz']:.2f}x"
        )
    print(f"written to {path}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["memory", "sqlite", "postgres"])
