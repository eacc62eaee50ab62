"""Optimistic writes on PostgreSQL (``PostgresStore.optimistic_transaction``): a customer read
without a lock is saved only if nobody saved it since; otherwise nothing is written and the
call runs again, locking, so it ends with the serial result."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from autumn_core import Autumn, Catalog, Feature, Item, ManualClock, Product
from autumn_core.changes import CustomerChange
from autumn_core.errors import StoreError
from autumn_core.model import replace
from autumn_postgres import PostgresStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages")],
        products=[Product("free", default=True, items=[Item.feature("messages", included=1000)])],
    )


def test_an_optimistic_save_after_another_save_writes_nothing(pg_store_url: str) -> None:
    """Given a customer read by an optimistic transaction, when another transaction saves it
    first, then the optimistic save fails with a retryable StoreError and the other's write
    stays."""
    store = PostgresStore(pg_store_url)
    billing = Autumn(catalog(), store=store, clock=ManualClock(T0))
    billing.customers.create("c", name="first")

    with pytest.raises(StoreError) as raised, store.optimistic_transaction() as tx:
        pk = tx.customer_pk("c")
        assert pk is not None
        mine = tx.load_customer(pk, for_update=True)
        assert mine is not None
        billing.customers.update("c", name="other")  # commits while tx holds no lock
        tx.save_customer(CustomerChange.between(mine, replace(mine, name="mine")))
    assert raised.value.retryable
    assert billing.customers.get("c").name == "other"
    billing.close()


def test_an_optimistic_read_takes_no_lock(pg_store_url: str) -> None:
    """Given an optimistic transaction that has read a customer, when another transaction
    saves that customer, then it does not wait for the first to end."""
    store = PostgresStore(pg_store_url)
    billing = Autumn(catalog(), store=store, clock=ManualClock(T0))
    billing.customers.create("c")
    other = PostgresStore(pg_store_url, lock_timeout=1)
    writer = Autumn(catalog(), store=other, clock=ManualClock(T0))
    with store.optimistic_transaction() as tx:
        assert tx.customer_pk("c") is not None
        writer.track("c", "messages", value=5)  # would time out behind a lock
    assert billing.customers.get("c").features["messages"].usage == 5
    writer.close()
    billing.close()


def test_threads_tracking_one_customer_lose_nothing(pg_store_url: str) -> None:
    """Given one customer and 4 threads each with its own store, when each tracks 25 times
    (optimistic first, locking after a lost race), then usage is exactly 100 and every
    remaining balance a call returned is distinct."""
    setup = Autumn(catalog(), store=PostgresStore(pg_store_url), clock=ManualClock(T0))
    setup.customers.create("hot")
    seen: list[object] = []
    lock = threading.Lock()

    def worker() -> None:
        b = Autumn(catalog(), store=PostgresStore(pg_store_url), clock=ManualClock(T0))
        for _ in range(25):
            r = b.track("hot", "messages")
            with lock:
                seen.append(r.balances["messages"].remaining)
        b.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert setup.customers.get("hot").features["messages"].usage == 100
    assert len(set(seen)) == 100
    setup.close()


def test_after_a_lost_race_the_customer_is_locked_for_a_while(
    pg_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given an optimistic save that lost a race on a customer, when the next optimistic
    transaction of that store reads the customer, then it holds the row lock (another writer
    times out behind it) and its save succeeds; once ``CONTENDED_S`` has passed, an
    optimistic read of it takes no lock again."""
    import autumn_postgres.store as pg_store

    store = PostgresStore(pg_store_url)
    billing = Autumn(catalog(), store=store, clock=ManualClock(T0))
    billing.customers.create("c")
    other = Autumn(
        catalog(), store=PostgresStore(pg_store_url, lock_timeout=0.2), clock=ManualClock(T0)
    )
    with pytest.raises(StoreError), store.optimistic_transaction() as tx:
        pk = tx.customer_pk("c")
        assert pk is not None
        mine = tx.load_customer(pk, for_update=True)
        assert mine is not None
        other.customers.update("c", name="other")
        tx.save_customer(CustomerChange.between(mine, replace(mine, name="mine")))
    # when
    with store.optimistic_transaction() as tx:
        pk = tx.customer_pk("c")
        assert pk is not None
        mine = tx.load_customer(pk, for_update=True)
        assert mine is not None and mine.name == "other"
        with pytest.raises(StoreError, match="lock"):
            other.track("c", "messages", value=5)  # waits for the row lock, gives up
        tx.save_customer(CustomerChange.between(mine, replace(mine, name="mine")))
    # then
    assert billing.customers.get("c").name == "mine"
    monkeypatch.setattr(pg_store, "CONTENDED_S", 0.0)
    with store.optimistic_transaction() as tx:
        assert tx.customer_pk("c") is not None
        other.track("c", "messages", value=5)  # no lock held: does not wait
    assert billing.customers.get("c").features["messages"].usage == 5
    other.close()
    billing.close()
