"""Store contract, part 3: transactions — atomicity, read-only, threads, durability (I3, I5)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import attrs
import pytest

from autumn_core.app.unit import IDEMPOTENCY_TTL
from autumn_core.changes import CustomerChange
from autumn_core.errors import StoreError
from autumn_core.ports import Store, StoreTransaction
from autumn_core.testing.contract._base import StoreTestBase
from autumn_core.testing.contract.builders import (
    T0,
    D,
    customer,
    event,
    idempotency,
    invoice,
    pending,
    product_version,
    rich_customer,
    row,
)


class Boom(Exception):
    """Raised by a test inside a transaction; must come out unchanged."""


def _nothing_written(tx: StoreTransaction, pk: str) -> None:
    assert tx.load_customer(pk) is None
    assert tx.customer_pk("cus_atomic") is None
    assert tx.customers_by_email("atomic@x.io") == []
    assert tx.list_customers(limit=10, starting_after=None, email=None) == []
    assert (
        tx.list_events(pk, feature_id=None, start=None, end=None, limit=10, starting_after=None)
        == []
    )
    assert tx.get_idempotency("track", pk, "key-1") is None
    assert not tx.trial_claimed("pro", pk, None, "fp-1")
    assert not tx.trial_claimed("pro", "pk_other", None, "fp-1")
    assert tx.list_invoices(pk) == []
    assert tx.get_invoice("inv_atomic") is None
    assert tx.get_pending("pend_atomic") is None
    assert tx.load_product_versions() == []


def _write_everything(tx: StoreTransaction) -> str:
    state = attrs.evolve(rich_customer("cus_atomic"), email="atomic@x.io")
    tx.insert_customer(state)
    tx.append_events([event(state.pk), event(state.pk)])
    tx.put_idempotency(idempotency(state.pk), expired=T0 - IDEMPOTENCY_TTL)
    assert tx.claim_trial("pro", state.pk, None, "fp-1")
    assert tx.claim_renewal("cp_atomic", T0)
    assert tx.claim_gateway_event("gevt_atomic")
    tx.save_invoice(invoice(state.pk, "inv_atomic"))
    tx.put_pending(pending("pend_atomic", state.pk))
    tx.save_product_version(product_version("pro", 1))
    return state.pk


# Every write method of the port, called with valid arguments.
WRITES: dict[str, Callable[[StoreTransaction], object]] = {
    "insert_customer": lambda tx: tx.insert_customer(customer("cus_ro")),
    "append_events": lambda tx: tx.append_events([event("pk_ro")]),
    "put_idempotency": lambda tx: tx.put_idempotency(
        idempotency("pk_ro"), expired=T0 - IDEMPOTENCY_TTL
    ),
    "claim_trial": lambda tx: tx.claim_trial("pro", "pk_ro", None, "fp-ro"),
    "claim_renewal": lambda tx: tx.claim_renewal("cp_ro", T0),
    "claim_gateway_event": lambda tx: tx.claim_gateway_event("gevt_ro"),
    "save_invoice": lambda tx: tx.save_invoice(invoice("pk_ro", "inv_ro")),
    "put_pending": lambda tx: tx.put_pending(pending("pend_ro")),
    "delete_pending": lambda tx: tx.delete_pending("pend_ro"),
    "save_product_version": lambda tx: tx.save_product_version(product_version("ro", 1)),
}


class TransactionContract(StoreTestBase):
    def test_exception_rolls_back_everything(self, store: Store) -> None:
        """Given a write transaction that writes a customer, events, an idempotency key, claims,
        an invoice, a pending record and a product version, when it raises, then the exception
        comes out unchanged and none of it is stored (I3)."""
        # given
        boom = Boom("fail after writing")
        pk = ""
        # when
        with pytest.raises(Boom) as raised, store.transaction() as tx:
            pk = _write_everything(tx)
            raise boom
        # then
        assert raised.value is boom
        with store.transaction() as tx:
            _nothing_written(tx, pk)
            assert tx.claim_renewal("cp_atomic", T0)
            assert tx.claim_gateway_event("gevt_atomic")

    def test_exception_rolls_back_a_save_and_a_delete(self, store: Store) -> None:
        """Given a stored customer, when a transaction saves a change to it (or deletes it)
        and then raises, then loading it gives the committed state."""
        # given
        before = rich_customer()
        self.insert(store, before)
        before = self.must_load(store, before.pk)
        after = attrs.evolve(before, rows=(attrs.evolve(before.rows[0], balance=D(0)),))
        # when
        with pytest.raises(Boom), store.transaction() as tx:
            tx.save_customer(CustomerChange.between(before, after))
            assert self.same(tx.load_customer(before.pk, for_update=True), after)
            raise Boom
        with pytest.raises(Boom), store.transaction() as tx:
            tx.delete_customer(before.pk)
            raise Boom
        # then
        reloaded = self.must_load(store, before.pk)
        assert reloaded == before
        assert reloaded.rows[0].balance == D("23.47")

    def test_committed_work_is_kept(self, store: Store) -> None:
        """Given a write transaction writing everything, when it ends normally, then all of
        it is stored and visible to a later read transaction."""
        with store.transaction() as tx:
            pk = _write_everything(tx)
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("cus_atomic") == pk
            assert (
                len(
                    tx.list_events(
                        pk, feature_id=None, start=None, end=None, limit=10, starting_after=None
                    )
                )
                == 2
            )
            assert tx.trial_claimed("pro", "pk_other", None, "fp-1")
            assert tx.get_invoice("inv_atomic") is not None
            assert tx.get_pending("pend_atomic") is not None
            assert tx.load_product_versions() == [product_version("pro", 1)]

    @pytest.mark.parametrize("write", list(WRITES.values()), ids=list(WRITES))
    def test_read_transaction_refuses_writes(
        self, store: Store, write: Callable[[StoreTransaction], object]
    ) -> None:
        """Given a read transaction, when any write method is called, then StoreError is raised
        and nothing is written."""
        # when / then
        with pytest.raises(StoreError), store.transaction(write=False) as tx:
            write(tx)
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("cus_ro") is None
            assert tx.get_invoice("inv_ro") is None
            assert tx.load_product_versions() == []
        with store.transaction() as tx:
            assert tx.claim_gateway_event("gevt_ro")

    def test_read_transaction_refuses_customer_writes(self, store: Store) -> None:
        """Given a stored customer and a read transaction, when it saves or deletes the
        customer, then StoreError is raised and the customer is unchanged."""
        # given
        s = customer(rows=(row("r", balance=1),))
        self.insert(store, s)
        s = self.must_load(store, s.pk)
        changed = attrs.evolve(s, rows=(attrs.evolve(s.rows[0], balance=D(0)),))
        # when / then
        with pytest.raises(StoreError), store.transaction(write=False) as tx:
            tx.save_customer(CustomerChange.between(s, changed))
        with pytest.raises(StoreError), store.transaction(write=False) as tx:
            tx.delete_customer(s.pk)
        assert self.load(store, s.pk) == s

    def test_closed_store_refuses_transactions(self, store: Store) -> None:
        """Given a closed store, when a transaction is opened, then StoreError is raised."""
        store.close()
        with pytest.raises(StoreError), store.transaction(write=False):
            pass

    def test_concurrent_writers_lose_no_update(self, store: Store) -> None:
        """Given one customer row with balance 0, when 4 threads each add 1 in 25 separate
        load-then-save transactions, then the balance is exactly 100 (writes are serialised)."""
        # given
        s = customer(rows=(row("r", balance=0),))
        self.insert(store, s)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(25):
                    with store.transaction() as tx:
                        before = tx.load_customer(s.pk, for_update=True)
                        assert before is not None
                        r = before.rows[0]
                        tx.save_customer(
                            CustomerChange.between(
                                before,
                                attrs.evolve(
                                    before, rows=(attrs.evolve(r, balance=r.balance + 1),)
                                ),
                            )
                        )
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        # when
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # then
        assert errors == []
        assert self.must_load(store, s.pk).rows[0].balance == 100

    def test_readers_see_whole_commits(self, store: Store) -> None:
        """Given a writer moving 1 between two rows 200 times, when readers load the customer
        meanwhile, then every read sees the rows summing to 100 (no half-applied save)."""
        # given
        s = customer(rows=(row("a", balance=100), row("b", balance=0)))
        self.insert(store, s)
        bad: list[object] = []
        done = threading.Event()

        def read() -> None:
            while not done.is_set():
                state = self.must_load(store, s.pk)
                total = sum(r.balance for r in state.rows)
                if total != 100:  # pragma: no cover - reported below
                    bad.append(total)

        readers = [threading.Thread(target=read) for _ in range(2)]
        for t in readers:
            t.start()
        # when
        try:
            for _ in range(200):
                with store.transaction() as tx:
                    before = tx.load_customer(s.pk, for_update=True)
                    assert before is not None
                    a, b = before.rows
                    tx.save_customer(
                        CustomerChange.between(
                            before,
                            attrs.evolve(
                                before,
                                rows=(
                                    attrs.evolve(a, balance=a.balance - 1),
                                    attrs.evolve(b, balance=b.balance + 1),
                                ),
                            ),
                        )
                    )
        finally:
            done.set()
            for t in readers:
                t.join()
        # then
        assert bad == []
        assert [r.balance for r in self.must_load(store, s.pk).rows] == [-100, 200]


class DurabilityContract(StoreTestBase):
    """Only for stores whose capabilities say ``durable`` / ``multi_process``."""

    def test_data_survives_reopening(self, store: Store) -> None:
        """Given a durable store holding a customer, events and claims, when it is closed and
        opened again, then everything is there."""
        if not store.capabilities.durable:
            pytest.skip("store is not durable")
        # given
        s = rich_customer("cus_durable")
        self.insert(store, s)
        with store.transaction() as tx:
            tx.append_events([event(s.pk, event_id="evt_d", value="0.1")])
            assert tx.claim_trial("pro", s.pk, None, "fp-d")
        # when
        store.close()
        again = self.reopen()
        # then
        with again.transaction(write=False) as tx:
            assert tx.customer_pk("cus_durable") == s.pk
            assert self.same(tx.load_customer(s.pk), s)
            events = tx.list_events(
                s.pk, feature_id=None, start=None, end=None, limit=10, starting_after=None
            )
            assert [e.value for e in events] == [D("0.1")]
            assert tx.trial_claimed("pro", "pk_x", None, "fp-d")

    def test_two_store_objects_share_the_data(self, store: Store) -> None:
        """Given two store objects over the same data (as two processes would have), when each
        writes in turn to one customer, then each sees the other's committed writes, even
        after having loaded (and possibly cached) the customer before."""
        if not store.capabilities.multi_process:
            pytest.skip("store is not multi-process")
        # given
        other = self.reopen()
        s = customer(rows=(row("r", balance=0),))
        self.insert(store, s)
        # when
        for i in range(6):
            writer = store if i % 2 == 0 else other
            with writer.transaction() as tx:
                before = tx.load_customer(s.pk, for_update=True)
                assert before is not None
                r = before.rows[0]
                tx.save_customer(
                    CustomerChange.between(
                        before, attrs.evolve(before, rows=(attrs.evolve(r, balance=r.balance + 1),))
                    )
                )
            # then
            for reader in (store, other):
                assert self.must_load(reader, s.pk).rows[0].balance == i + 1
