"""The statements a call sends stay index lookups as customers grow: a customer's children are
read through their (customer_pk, id) index.

Plans, not timings: with a few thousand customers and fresh statistics, PostgreSQL picks a
sequential scan only where no index can serve the statement."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from autumn_core.model import CustomerState, EntityState, ProductState, RowState
from autumn_postgres import PostgresStore, sql

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CUSTOMERS = 3000


def customer(n: int) -> CustomerState:
    cp = f"cp_{n:06d}"
    return CustomerState(
        pk=f"cus_{n:06d}",
        id=f"c{n:06d}",
        created_at=T0 + timedelta(seconds=n),
        email=f"u{n}@example.com",
        products=(ProductState(cp, "free", 1, "active", T0),),
        rows=(RowState(f"row_{n:06d}", "messages", T0, cp_id=cp, product_id="free"),),
        entities=(EntityState(f"e{n}", "seats", T0),),
    )


@pytest.fixture
def grown(pg_store_url: str) -> Any:
    store = PostgresStore(pg_store_url)
    with store.transaction(write=True) as tx:
        for n in range(CUSTOMERS):
            tx.insert_customer(customer(n))
    store.close()
    with psycopg.connect(pg_store_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        yield conn


def plan(conn: Any, statement: str, params: dict[str, Any]) -> dict[str, Any]:
    row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params).fetchone()
    text = row[0] if isinstance(row[0], str) else json.dumps(row[0])
    return json.loads(text)[0]["Plan"]  # type: ignore[no-any-return]


def nodes(p: dict[str, Any]) -> list[dict[str, Any]]:
    return [p, *(n for child in p.get("Plans", []) for n in nodes(child))]


def test_reading_a_customer_uses_the_child_indexes(grown: Any) -> None:
    """Given 3,000 customers, when one is read by pk, then no child table is scanned whole."""
    p = plan(
        grown,
        f"SELECT {sql.FULL} FROM autumn_customers c WHERE c.pk = %(pk)s",
        {"pk": "cus_001500"},
    )

    scanned = [n["Relation Name"] for n in nodes(p) if n["Node Type"] == "Seq Scan"]
    assert scanned == []


def test_a_page_deep_in_the_customer_list_reads_from_its_place(grown: Any) -> None:
    """Given 3,000 customers, when the page after the 2,000th is listed, then the scan of the
    customers starts at the cursor: it reads about one page of rows, not the 2,000 before it."""
    from autumn_postgres.transaction import LIST_CUSTOMERS

    p = plan(grown, LIST_CUSTOMERS, {"email": None, "after": "cus_002000", "limit": 51})

    scans = [n for n in nodes(p) if n.get("Relation Name") == "autumn_customers"]
    read = sum(n["Actual Rows"] + n.get("Rows Removed by Filter", 0) for n in scans)
    assert read < 200, scans
