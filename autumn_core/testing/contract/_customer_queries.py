"""Store contract, part 1b: finding customers: by email, listed in order and by page, due for
lazy work, by product version (docs/rules.md C1-C11).
"""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from autumn_core.errors import StoreError, UniqueViolation
from autumn_core.model import CustomerState, RowState
from autumn_core.ports import Store
from autumn_core.testing.contract._base import StoreTestBase
from autumn_core.testing.contract.builders import (
    T0,
    customer,
    product,
    rich_customer,
    row,
)

EXACT_DECIMALS = ["23.47", "0.1", "1000000000000000", "-1000000000000000", "-42.5", "0.000001", "0"]


class CustomerQueryContract(StoreTestBase):
    def test_customers_by_email(self, store: Store) -> None:
        """Given customers with and without ids sharing an email in different cases, when they
        are looked up by that email, then all are returned oldest first, and no others."""
        # given
        new = customer("ann2", email="ANN@X.IO", created_at=T0 + timedelta(seconds=2))
        mid = customer("ann", email="ann@x.io", created_at=T0 + timedelta(seconds=1))
        old = customer(None, email="Ann@X.io", created_at=T0)
        other = customer("bob", email="bob@x.io")
        self.insert(store, new, mid, old, other)
        # when
        with store.transaction(write=False) as tx:
            found = tx.customers_by_email("aNN@x.io")
            missing = tx.customers_by_email("nobody@x.io")
        # then
        assert [c.pk for c in found] == [old.pk, mid.pk, new.pk]
        assert missing == []

    def test_customers_by_email_orders_one_instant_by_id_id_less_last(self, store: Store) -> None:
        """Given customers sharing an email and a creation instant, inserted out of order, when
        looked up by that email, then they follow the list order: id, id-less last (C11)."""
        # given
        self.insert(
            store,
            customer("c", pk="pk_1", email="t@x.io", created_at=T0),
            customer(None, pk="pk_0", email="T@x.io", created_at=T0),
            customer("a", pk="pk_3", email="t@X.io", created_at=T0),
            customer("b", pk="pk_2", email="t@x.io", created_at=T0),
            customer("z", pk="pk_9", email="t@x.io", created_at=T0 - timedelta(seconds=1)),
        )
        # when
        with store.transaction(write=False) as tx:
            found = tx.customers_by_email("t@x.io")
        # then
        assert [c.id for c in found] == ["z", "a", "b", "c", None]

    def test_list_customers_orders_and_pages(self, store: Store) -> None:
        """Given five customers (two created at the same instant), when listed two at a time
        with ``starting_after``, then pages follow (created_at, id, pk) and cover everyone once."""
        # given
        states = [
            customer("c3", pk="pk_c", created_at=T0 + timedelta(seconds=2)),
            customer(None, pk="pk_b", email="pre@x.io", created_at=T0 + timedelta(seconds=1)),
            customer("c1", pk="pk_a2", created_at=T0),
            customer("c0", pk="pk_a1", created_at=T0),
            customer("c4", pk="pk_d", created_at=T0 + timedelta(days=1)),
        ]
        self.insert(store, *states)
        # when
        pages: list[list[str]] = []
        after = None
        with store.transaction(write=False) as tx:
            while True:
                page = tx.list_customers(limit=2, starting_after=after, email=None)
                if not page:
                    break
                pages.append([c.pk for c in page])
                after = page[-1].pk
        # then
        assert pages == [["pk_a1", "pk_a2"], ["pk_b", "pk_c"], ["pk_d"]]

    def test_list_customers_orders_one_instant_by_id_id_less_last(self, store: Store) -> None:
        """Given customers created at one instant with ids "c", "a", "b" and one without an id
        (pks chosen against that order), when listed, then they come in id order with the
        id-less one last (C11), and paging one at a time returns each exactly once."""
        # given
        states = [
            customer("c", pk="pk_1", created_at=T0),
            customer(None, pk="pk_0", email="pre@x.io", created_at=T0),
            customer("a", pk="pk_3", created_at=T0),
            customer("b", pk="pk_2", created_at=T0),
        ]
        self.insert(store, *states)
        # when
        with store.transaction(write=False) as tx:
            full = tx.list_customers(limit=10, starting_after=None, email=None)
            paged: list[str | None] = []
            after = None
            for _ in range(10):
                page = tx.list_customers(limit=1, starting_after=after, email=None)
                if not page:
                    break
                paged.extend(c.id for c in page)
                after = page[-1].pk
        # then
        assert [c.id for c in full] == ["a", "b", "c", None]
        assert paged == ["a", "b", "c", None]

    def test_list_customers_orders_ids_by_code_point(self, store: Store) -> None:
        """Given customers created at one instant whose ids differ in case and script, when
        listed, then ids compare by code point (not by a locale's collation), and the
        id-less ones follow in pk order."""
        # given
        ids = ["b", "B", "a", "\u00e9", "A", "a-", "a_"]
        self.insert(store, *(customer(i, created_at=T0) for i in ids))
        self.insert(
            store,
            customer(None, pk="pk_y", email="y@x.io", created_at=T0),
            customer(None, pk="pk_x", email="x@x.io", created_at=T0),
        )
        # when
        with store.transaction(write=False) as tx:
            listed = tx.list_customers(limit=20, starting_after=None, email=None)
        # then
        assert [c.id for c in listed] == [*sorted(ids), None, None]
        assert [c.pk for c in listed[-2:]] == ["pk_x", "pk_y"]

    def test_list_customers_starting_after_a_customer_the_filter_skips(self, store: Store) -> None:
        """Given customers some of which match an email, when listed with that email filter
        and ``starting_after`` a customer that does not match it, then the page starts after
        that customer's place in the full order."""
        # given
        a = customer("a", email="team@x.io", created_at=T0)
        b = customer("b", email="other@x.io", created_at=T0 + timedelta(seconds=1))
        c = customer(None, email="Team@x.io", created_at=T0 + timedelta(seconds=1))
        d = customer("d", email="TEAM@x.io", created_at=T0 + timedelta(seconds=2))
        self.insert(store, a, b, c, d)
        # when
        with store.transaction(write=False) as tx:
            after_b = tx.list_customers(limit=10, starting_after=b.pk, email="team@x.io")
            after_d = tx.list_customers(limit=10, starting_after=d.pk, email="other@x.io")
        # then
        assert [s.pk for s in after_b] == [c.pk, d.pk]
        assert after_d == []

    def test_list_customers_filters_by_email(self, store: Store) -> None:
        """Given customers with several emails, when listed with an email filter in another
        case, then only the matching ones are returned, in order, and the limit applies."""
        # given
        a = customer("a", email="team@x.io", created_at=T0)
        b = customer(None, email="Team@X.io", created_at=T0 + timedelta(seconds=1))
        c = customer("c", email="other@x.io", created_at=T0 + timedelta(seconds=2))
        d = customer("d", email="TEAM@x.io", created_at=T0 + timedelta(seconds=3))
        self.insert(store, a, b, c, d)
        # when
        with store.transaction(write=False) as tx:
            full = tx.list_customers(limit=10, starting_after=None, email="tEAm@x.io")
            first = tx.list_customers(limit=1, starting_after=None, email="team@x.io")
            rest = tx.list_customers(limit=10, starting_after=a.pk, email="team@x.io")
        # then
        assert [s.pk for s in full] == [a.pk, b.pk, d.pk]
        assert [s.pk for s in first] == [a.pk]
        assert [s.pk for s in rest] == [b.pk, d.pk]

    def test_due_customer_pks(self, store: Store) -> None:
        """Given customers due at different times (a row reset, a period end) and one never
        due, when asked at an instant, then exactly those due by then are returned, the limit
        applies, and a save moving the due time is taken into account."""
        # given
        early = customer(rows=(row(next_reset_at=T0 + timedelta(days=1)),))
        late = customer(products=(product(current_period_end=T0 + timedelta(days=30)),))
        never = customer(rows=(row(),))
        self.insert(store, early, late, never)
        # when / then
        with store.transaction(write=False) as tx:
            assert tx.due_customer_pks(T0, None) == []
            assert tx.due_customer_pks(T0 + timedelta(days=1), None) == [early.pk]
            assert set(tx.due_customer_pks(T0 + timedelta(days=30), None)) == {early.pk, late.pk}
            assert len(tx.due_customer_pks(T0 + timedelta(days=30), 1)) == 1
        before = self.must_load(store, early.pk)
        moved = attrs.evolve(
            before, rows=(attrs.evolve(before.rows[0], next_reset_at=T0 + timedelta(days=60)),)
        )
        self.save(store, before, moved)
        with store.transaction(write=False) as tx:
            assert tx.due_customer_pks(T0 + timedelta(days=30), None) == [late.pk]

    def test_product_version_in_use(self, store: Store) -> None:
        """Given a customer holding pro v2, when asked which versions are in use, then v2 is
        and v1 and other products are not; after the product is removed, v2 is not."""
        # given
        s = customer(products=(product("cp_v", "pro", version=2),))
        self.insert(store, s)
        # when / then
        with store.transaction(write=False) as tx:
            assert tx.product_version_in_use("pro", 2)
            assert not tx.product_version_in_use("pro", 1)
            assert not tx.product_version_in_use("team", 2)
        loaded = self.must_load(store, s.pk)
        self.save(store, loaded, attrs.evolve(loaded, products=()))
        with store.transaction(write=False) as tx:
            assert not tx.product_version_in_use("pro", 2)

    def test_states_are_immutable_records(self, store: Store) -> None:
        """Given a loaded customer, then it is a frozen CustomerState whose rows are RowState."""
        s = rich_customer()
        self.insert(store, s)
        loaded = self.must_load(store, s.pk)
        assert isinstance(loaded, CustomerState)
        assert all(isinstance(r, RowState) for r in loaded.rows)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            loaded.name = "x"  # type: ignore[misc]

    def test_unique_violation_is_a_store_error(self) -> None:
        """UniqueViolation is a StoreError, so callers that only know StoreError still stop."""
        assert issubclass(UniqueViolation, StoreError)
