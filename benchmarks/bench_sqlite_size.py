"""Bytes on disk per customer and per event in a SQLite database, and what each table holds.

10,000 customers are created through the public API (each with the catalog's default product:
one product, one balance row, a name and an email); then every customer tracks ``EVENTS``
times. The file is checkpointed (WAL folded in) and measured after each
phase: bytes per customer = file size after the first phase (without the events) / customers,
bytes per event = growth of the second phase / events (each track also rewrites its
customer's balance row, in place). ``dbstat`` gives the split by table.

Run: .venv/bin/python benchmarks/bench_sqlite_size.py
Target: at most 1 KB per customer (issue 18).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _harness import write
from bench_sqlite import engine

CUSTOMERS = 10_000
EVENTS = 10


def _size(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return os.path.getsize(path)


def _tables(path: Path, per: int) -> dict[str, float]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name HAVING sum(pgsize) > ?"
            " ORDER BY 2 DESC",
            (per,),
        ).fetchall()
    except sqlite3.OperationalError:  # a SQLite built without dbstat
        rows = []
    finally:
        conn.close()
    return {name: round(size / per, 1) for name, size in rows}


def main() -> None:
    figures: dict[str, Any] = {"customers": CUSTOMERS, "events_per_customer": EVENTS}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "size.db"
        billing = engine(path)
        ids = [f"user-{i:07d}" for i in range(CUSTOMERS)]
        for i, customer_id in enumerate(ids):
            billing.customers.create(customer_id, name=f"User {i}", email=f"user{i}@example.com")
        billing.close()
        first = _size(path)
        figures["bytes_per_customer"] = first / CUSTOMERS
        figures["tables_per_customer"] = _tables(path, CUSTOMERS)
        billing = engine(path)
        for _ in range(EVENTS):
            for customer_id in ids:
                billing.track(customer_id, "messages")
        billing.close()
        figures["bytes_per_event"] = (_size(path) - first) / (CUSTOMERS * EVENTS)
    path_out = write("sqlite_size", figures)
    print(
        f"| bytes per customer ({CUSTOMERS:,} customers, no events) "
        f"| {figures['bytes_per_customer']:,.0f} | <= 1,024 |"
    )
    print(f"| bytes per further event | {figures['bytes_per_event']:,.0f} | - |")
    print("by table, bytes per customer:", figures["tables_per_customer"])
    print(f"written to {path_out}")


if __name__ == "__main__":
    main()
