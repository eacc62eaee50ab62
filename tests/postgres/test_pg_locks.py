"""Reserve and finalize on PostgreSQL: a lock's index record and its customer are read in one
round trip (``PostgresTransaction.get_pending_locking_customer``), under the customer's lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from psycopg_pool import ConnectionPool

import autumn_core
from autumn_core.app.holds import lock_key
from autumn_core.changes import CustomerChange
from autumn_core.control_state import LockState, LockTake
from autumn_core.model import CustomerState
from autumn_core.testing.contract.builders import rich_customer
from autumn_postgres import PostgresStore
from tests.postgres.test_pg_store import _metered_catalog, _round_trips


def test_reserve_and_finalize_are_two_round_trips_each(pg_store_url: str, tmp_path: Path) -> None:
    """Given a customer, when the engine reserves with a lock and confirms it through a store
    whose pool has one connection, then each reservation and each finalize is at most two
    round trips (the finalize: BEGIN, the lock's record, the customer locked and its version
    read, the cached state reused; then the writes with COMMIT); without a parse cache a
    finalize reads the customer in a third; and when another process changed the customer
    in between, the finalize reads its new state: the balance is exact every time."""
    for cache_size, trips in ((10_000, 2), (0, 3)):
        pool: ConnectionPool[Any] = ConnectionPool(
            pg_store_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True
        )
        billing = autumn_core.Autumn(
            _metered_catalog(), store=PostgresStore(pool, cache_size=cache_size)
        )
        other = autumn_core.Autumn(_metered_catalog(), store=PostgresStore(pg_store_url))
        cid = f"l{cache_size}"
        try:
            billing.customers.create(cid)
            billing.check(cid, "messages", required_balance=5, lock={"lock_id": f"{cid}-w"})
            billing.balances.finalize(f"{cid}-w", "confirm", override_value=3)  # warm
            with _round_trips(pool, tmp_path) as checks:
                for i in range(5):
                    lock = {"lock_id": f"{cid}-{i}"}
                    assert billing.check(cid, "messages", required_balance=5, lock=lock).allowed
            with _round_trips(pool, tmp_path) as finals:
                for i in range(5):
                    billing.balances.finalize(f"{cid}-{i}", "confirm", override_value=3)
            assert checks[0] <= 5 * 2, checks
            assert finals[0] <= 5 * trips, finals
            billing.check(cid, "messages", required_balance=5, lock={"lock_id": f"{cid}-x"})
            other.track(cid, "messages", value=2)
            billing.balances.finalize(f"{cid}-x", "confirm", override_value=4)
            assert billing.customers.get(cid).features["messages"].usage == Decimal(24)
        finally:
            other.close()
            billing.close()
            pool.close()


def test_the_record_read_holds_its_customers_lock(pg_store_url: str) -> None:
    """Given a held lock, when a write transaction reads its index record with its customer,
    then the customer is that record's, loaded as stored, and locked until the transaction
    ends: another session cannot lock the customer's row meanwhile."""
    store = PostgresStore(pg_store_url)
    billing = autumn_core.Autumn(_metered_catalog(), store=store)
    billing.customers.create("held")
    billing.check("held", "messages", required_balance=5, lock={"lock_id": "held-1"})
    with store.transaction() as tx:
        pk = tx.customer_pk("held")
    assert pk is not None
    with store.transaction() as tx:
        record = tx.get_pending_locking_customer(lock_key("held-1"))
        assert record is not None and record.customer_pk == pk
        state = tx.load_customer(pk, for_update=True)
        assert state is not None and [lk.id for lk in state.control_state.locks] == ["held-1"]
        with (
            psycopg.connect(pg_store_url, autocommit=True) as other,
            pytest.raises(psycopg.errors.LockNotAvailable),
        ):
            other.execute("SELECT pk FROM autumn_customers WHERE pk = %s FOR UPDATE NOWAIT", (pk,))
    with store.transaction() as tx:
        assert tx.get_pending_locking_customer(lock_key("unknown")) is None
    billing.close()


def test_a_lock_sets_the_control_state_alone_in_the_head(pg_store_url: str) -> None:
    """Given a rich customer, when a save opens a lock (its hold taken from one row) and a
    later one settles it, then the stored head differs from before in its control state
    alone, and a fresh store reads each state exactly; a later rename rewrites the head with
    the control state in it."""
    # given
    store = PostgresStore(pg_store_url)
    s = attrs.evolve(rich_customer(), pk="pk_lock_head", id="cus_lock_head")
    with store.transaction() as tx:
        tx.insert_customer(s)

    def stored_head() -> dict[str, Any]:
        with psycopg.connect(pg_store_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT head FROM autumn_customers WHERE pk = %s", (s.pk,)
            ).fetchone()
        assert row is not None
        head: dict[str, Any] = row[0]
        return head

    def fresh_load() -> CustomerState:
        other = PostgresStore(pg_store_url, cache_size=0)
        try:
            with other.transaction(write=False) as tx:
                state = tx.load_customer(s.pk)
        finally:
            other.close()
        assert state is not None
        return state

    before_head = stored_head()
    when = datetime(2025, 1, 6, tzinfo=UTC)
    row0 = s.rows[0]
    lock = LockState(
        id="job-1",
        feature_id=row0.feature_id,
        entity_id=None,
        requested=D("2.5"),
        held=D("2.50"),
        takes=(LockTake(row0.id, row0.feature_id, D("2.50")),),
        created_at=when,
        expires_at=when + timedelta(hours=1),
        properties={"job": 1},
    )
    held = attrs.evolve(
        s,
        rows=(attrs.evolve(row0, balance=row0.balance - D("2.50")), *s.rows[1:]),
        control_state=s.control_state.opened(lock),
    )
    settled = attrs.evolve(
        held, rows=s.rows, control_state=attrs.evolve(held.control_state, locks=())
    )
    for version, (prev, nxt) in enumerate(((s, held), (held, settled)), start=1):
        # when
        with store.transaction() as tx:
            tx.save_customer(CustomerChange.since(prev, nxt, version))
        # then
        head = stored_head()
        assert {k: v for k, v in head.items() if k != "control_state"} == before_head
        assert head["control_state"]["lock_due"] == "2025-01-06T01:00:00Z"
        loaded = fresh_load()
        assert (loaded.control_state, loaded.rows) == (nxt.control_state, nxt.rows)
    # when
    renamed = attrs.evolve(settled, name="Renamed Ltd")
    with store.transaction() as tx:
        tx.save_customer(CustomerChange.since(settled, renamed, 3))
    # then
    assert stored_head()["name"] == "Renamed Ltd"
    loaded = fresh_load()
    assert (loaded.name, loaded.control_state) == ("Renamed Ltd", settled.control_state)
    with store.transaction(write=False) as tx:
        assert tx.load_customer(s.pk) == loaded
    store.close()
