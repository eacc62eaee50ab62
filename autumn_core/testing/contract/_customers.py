"""Store contract, part 1: the customer aggregate (docs/rules.md C1-C11, I5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autumn_core.app.unit import IDEMPOTENCY_TTL
from autumn_core.changes import CustomerChange
from autumn_core.errors import StoreError, UniqueViolation
from autumn_core.model import CustomerState, RowState
from autumn_core.ports import Store
from autumn_core.testing.contract._base import StoreTestBase
from autumn_core.testing.contract.builders import (
    T0,
    D,
    customer,
    entity,
    event,
    idempotency,
    invoice,
    product,
    rich_customer,
    row,
)

EXACT_DECIMALS = ["23.47", "0.1", "1000000000000000", "-1000000000000000", "-42.5", "0.000001", "0"]


class CustomerContract(StoreTestBase):
    # -- insert and load ------------------------------------------------------------------------
    def test_inserted_customer_loads_back_equal(self, store: Store) -> None:
        """Given a customer with products, rows, rollovers and entities, when it is inserted,
        then loading it by pk returns an equal aggregate at a version of at least 1."""
        # given
        state = rich_customer()
        # when
        self.insert(store, state)
        # then
        loaded = self.must_load(store, state.pk)
        assert self.same(loaded, state)
        assert loaded.version >= 1
        with store.transaction(write=False) as tx:
            assert state.id is not None
            assert tx.customer_pk(state.id) == state.pk

    def test_unknown_customer_is_none(self, store: Store) -> None:
        """Given an empty store, when an unknown pk or id is looked up, then both are None."""
        with store.transaction(write=False) as tx:
            assert tx.load_customer("pk_missing") is None
            assert tx.customer_pk("cus_missing") is None

    @pytest.mark.parametrize("text", EXACT_DECIMALS)
    def test_decimals_round_trip_exactly(self, store: Store, text: str) -> None:
        """Given a Decimal in a row, a rollover and product quantities, when the customer is
        saved and loaded, then the value and its exact text come back unchanged."""
        # given
        value = Decimal(text)
        state = customer(
            products=(product("cp_d", quantities={"seats": value}),),
            rows=(
                row(
                    "row_d",
                    granted=value,
                    balance=value,
                    max_purchase=value,
                    rollovers=(),
                ),
            ),
        )
        # when
        self.insert(store, state)
        loaded = self.must_load(store, state.pk)
        # then
        assert loaded.rows[0].balance == value
        assert str(loaded.rows[0].balance) == text
        assert str(loaded.rows[0].granted) == text
        assert loaded.rows[0].max_purchase == value
        assert str(loaded.products[0].quantities["seats"]) == text

    def test_decimals_survive_an_update(self, store: Store) -> None:
        """Given a row with balance 100, when 76.53 is deducted, then exactly 23.47 is stored."""
        # given
        before = customer(rows=(row("r", granted=100, balance=100),))
        self.insert(store, before)
        before = self.must_load(store, before.pk)
        # when
        after = attrs.evolve(
            before, rows=(attrs.evolve(before.rows[0], balance=D(100) - D("76.53")),)
        )
        self.save(store, before, after)
        # then
        assert self.must_load(store, before.pk).rows[0].balance == D("23.47")

    def test_datetimes_round_trip_as_aware_utc(self, store: Store) -> None:
        """Given datetimes with microseconds (one given in +02:00), when stored and loaded,
        then each is the same instant, timezone-aware."""
        # given
        t = datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
        plus2 = datetime(2025, 6, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=2)))
        state = customer(created_at=t, rows=(row("r", next_reset_at=plus2, anchor=t),))
        # when
        self.insert(store, state)
        loaded = self.must_load(store, state.pk)
        # then
        assert loaded.created_at == t
        assert loaded.created_at.utcoffset() == timedelta(0)
        assert loaded.rows[0].next_reset_at == plus2
        assert loaded.rows[0].next_reset_at is not None
        assert loaded.rows[0].next_reset_at.tzinfo is not None

    def test_metadata_round_trips_as_json(self, store: Store) -> None:
        """Given nested JSON metadata, when stored and loaded, then it is equal."""
        # given
        meta = {"a": [1, 2.5, "x", None, True], "b": {"c": {"d": []}}, "ü": "ß"}
        state = customer(metadata=meta)
        # when
        self.insert(store, state)
        # then
        assert self.must_load(store, state.pk).metadata == meta

    @settings(
        max_examples=25,
        deadline=None,
        # One test body runs on several store classes (the executors); each example uses fresh
        # ids, so sharing the function-scoped store between examples is safe.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        amounts=st.lists(
            st.decimals(
                min_value=-(10**15),
                max_value=10**15,
                places=6,
                allow_nan=False,
                allow_infinity=False,
            ),
            min_size=1,
            max_size=4,
        ),
        when=st.datetimes(
            min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ),
    )
    def test_any_rows_round_trip(
        self, store: Store, amounts: list[Decimal], when: datetime
    ) -> None:
        """Given rows with arbitrary exact amounts and times, when saved, then loaded equal."""
        # given
        rows = tuple(
            row(granted=a, balance=-a, next_reset_at=when, created_at=when) for a in amounts
        )
        state = customer(created_at=when, rows=rows)
        # when
        self.insert(store, state)
        # then
        loaded = self.must_load(store, state.pk)
        assert self.same(loaded, state)
        assert [str(r.granted) for r in loaded.rows] == [str(a) for a in amounts]

    # -- uniqueness ---------------------------------------------------------------------------
    def test_duplicate_id_is_refused(self, store: Store) -> None:
        """Given a customer with id X, when another customer with id X is inserted, then
        UniqueViolation is raised and only the first exists."""
        # given
        first = customer("cus_x")
        self.insert(store, first)
        second = customer("cus_x")
        # when / then
        with pytest.raises(UniqueViolation), store.transaction() as tx:
            tx.insert_customer(second)
        assert self.load(store, second.pk) is None
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("cus_x") == first.pk

    def test_duplicate_pk_is_refused(self, store: Store) -> None:
        """Given a customer with pk P, when another customer with pk P is inserted, then
        UniqueViolation is raised and the first is unchanged."""
        # given
        first = customer("cus_a", pk="pk_same")
        self.insert(store, first)
        # when / then
        with pytest.raises(UniqueViolation), store.transaction() as tx:
            tx.insert_customer(customer("cus_b", pk="pk_same"))
        assert self.same(self.load(store, "pk_same"), first)

    def test_ids_are_case_sensitive(self, store: Store) -> None:
        """Given a customer "Ann", when customer "ann" is inserted, then both exist."""
        a, b = customer("Ann"), customer("ann")
        self.insert(store, a, b)
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("Ann") == a.pk
            assert tx.customer_pk("ann") == b.pk

    def test_idless_email_is_unique_case_insensitively(self, store: Store) -> None:
        """Given an id-less customer "Dana@Corp.io", when another id-less customer
        "dana@corp.io" is inserted, then UniqueViolation is raised (C6)."""
        # given
        self.insert(store, customer(None, email="Dana@Corp.io"))
        loser = customer(None, email="dana@corp.io")
        # when / then
        with pytest.raises(UniqueViolation), store.transaction() as tx:
            tx.insert_customer(loser)
        assert self.load(store, loser.pk) is None

    def test_emails_may_repeat_when_ids_are_set(self, store: Store) -> None:
        """Given an id-less customer with an email, when customers with ids and the same email,
        and an id-less customer with another email, are inserted, then all coexist."""
        # given
        idless = customer(None, email="dana@corp.io")
        # when
        others = (
            customer("u1", email="DANA@corp.io"),
            customer("u2", email="dana@corp.io"),
            customer(None, email="erin@corp.io"),
        )
        self.insert(store, idless, *others)
        # then
        for state in (idless, *others):
            assert self.same(self.load(store, state.pk), state)

    def test_refused_insert_leaves_the_transaction_usable(self, store: Store) -> None:
        """Given a transaction in which an insert was refused, when the caller carries on and
        commits, then the refused customer is absent and the other writes are kept."""
        # given
        self.insert(store, customer("cus_taken"))
        kept = customer("cus_kept")
        refused = customer("cus_taken")
        # when
        with store.transaction() as tx:
            with pytest.raises(UniqueViolation):
                tx.insert_customer(refused)
            tx.insert_customer(kept)
        # then
        assert self.load(store, refused.pk) is None
        assert self.same(self.load(store, kept.pk), kept)

    # -- claim and rename ----------------------------------------------------------------------
    def test_claim_gives_an_idless_customer_an_id(self, store: Store) -> None:
        """Given an id-less customer with products and rows, when it is saved with an id,
        then it is found by that id with everything kept, and its email is free again for a
        new id-less customer (C5)."""
        # given
        before = attrs.evolve(rich_customer(None), email="cfo@bigco.com")
        self.insert(store, before)
        before = self.must_load(store, before.pk)
        # when
        after = attrs.evolve(before, id="u-881")
        self.save(store, before, after)
        # then
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("u-881") == before.pk
            claimed = tx.load_customer(before.pk)
        assert self.same(claimed, after)
        self.insert(store, customer(None, email="CFO@bigco.com"))

    def test_rename_moves_the_id(self, store: Store) -> None:
        """Given customer "old", when it is saved with id "new", then "new" finds it, "old"
        finds nothing, and "old" can be used again."""
        # given
        before = customer("old")
        self.insert(store, before)
        before = self.must_load(store, before.pk)
        # when
        self.save(store, before, attrs.evolve(before, id="new"))
        # then
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("new") == before.pk
            assert tx.customer_pk("old") is None
        self.insert(store, customer("old"))

    def test_rename_to_a_taken_id_is_refused(self, store: Store) -> None:
        """Given customers "a" and "b", when "a" is saved with id "b", then UniqueViolation is
        raised and, the caller carrying on, "a" keeps its id and nothing of that save is kept."""
        # given
        a, b = customer("a", rows=(row("ra", balance=1),)), customer("b")
        self.insert(store, a, b)
        a = self.must_load(store, a.pk)
        # when
        with store.transaction() as tx, pytest.raises(UniqueViolation):
            tx.save_customer(
                CustomerChange.between(
                    a, attrs.evolve(a, id="b", rows=(attrs.evolve(a.rows[0], balance=D(9)),))
                )
            )
        # then
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("a") == a.pk
            assert tx.customer_pk("b") == b.pk
        assert self.must_load(store, a.pk).rows[0].balance == 1

    # -- saving changes -------------------------------------------------------------------------
    def test_save_persists_changed_added_and_removed_children(self, store: Store) -> None:
        """Given a rich customer, when one row changes, a row is added, a product is removed
        and an entity is added, then the loaded customer equals the saved one."""
        # given
        before = rich_customer()
        self.insert(store, before)
        before = self.must_load(store, before.pk)
        # when
        after = attrs.evolve(
            before,
            name="Renamed",
            products=(),
            rows=(
                attrs.evolve(before.rows[0], balance=D("22.47")),
                *before.rows[1:],
                row("row_new", "credits", granted=5, balance=5),
            ),
            entities=(*before.entities, entity("ent_3")),
        )
        self.save(store, before, after)
        # then
        assert self.same(self.load(store, before.pk), after)

    @pytest.mark.parametrize(
        "reshape",
        [
            pytest.param(lambda rows: rows[::-1], id="reversed"),
            pytest.param(lambda rows: rows[:1] + rows[2:], id="middle-removed"),
            pytest.param(lambda rows: (row("row_front"), *rows), id="inserted-at-front"),
            pytest.param(lambda rows: (*rows[1:], rows[0]), id="first-moved-last"),
            pytest.param(lambda rows: (), id="all-removed"),
        ],
    )
    def test_save_keeps_the_order_of_children(self, store: Store, reshape: object) -> None:
        """Given a customer with three rows, when it is saved with its rows reordered, cut or
        extended, then the loaded rows are in the saved order."""
        # given
        before = customer(rows=(row("r1"), row("r2"), row("r3")))
        self.insert(store, before)
        before = self.must_load(store, before.pk)
        # when
        after = attrs.evolve(before, rows=reshape(before.rows))  # type: ignore[operator]
        self.save(store, before, after)
        # then
        assert self.same(self.load(store, before.pk), after)

    def test_two_saves_in_one_transaction(self, store: Store) -> None:
        """Given a loaded customer, when it is saved twice in one transaction, each save
        passing the caller's previous object as ``before``, then the second state is stored."""
        # given
        s0 = customer(rows=(row("r1", balance=10),))
        self.insert(store, s0)
        s0 = self.must_load(store, s0.pk)
        # when
        s1 = attrs.evolve(s0, rows=(*s0.rows, row("r2", balance=5)))
        s2 = attrs.evolve(s1, rows=(attrs.evolve(s1.rows[0], balance=D(3)), s1.rows[1]))
        with store.transaction() as tx:
            tx.save_customer(CustomerChange.between(s0, s1))
            tx.save_customer(CustomerChange.between(s1, s2))
        # then
        assert self.same(self.load(store, s0.pk), s2)

    def test_save_with_a_stale_before_still_stores_after(self, store: Store) -> None:
        """Given a customer saved since the copy ``before`` was loaded, when ``after`` (made
        from that stale copy) is saved, then exactly ``after`` is stored: a store that writes
        only the difference must notice that ``before`` is not what it holds."""
        # given
        s0 = customer(rows=(row("r1", balance=1), row("r2", balance=2)))
        self.insert(store, s0)
        stale = self.must_load(store, s0.pk)
        newer = attrs.evolve(
            stale, name="newer", rows=(row("r0"), *stale.rows[::-1], row("r3", balance=3))
        )
        self.save(store, stale, newer)
        # when
        after = attrs.evolve(stale, rows=(attrs.evolve(stale.rows[0], balance=D(5)),))
        self.save(store, stale, after)
        # then
        assert self.same(self.load(store, s0.pk), after)

    def test_version_increases_on_every_save(self, store: Store) -> None:
        """Given a customer, when it is saved twice, then each load shows a higher version."""
        # given
        s = customer(rows=(row("r", balance=3),))
        self.insert(store, s)
        v1 = self.must_load(store, s.pk)
        # when
        self.save(store, v1, attrs.evolve(v1, rows=(attrs.evolve(v1.rows[0], balance=D(2)),)))
        v2 = self.must_load(store, s.pk)
        self.save(store, v2, attrs.evolve(v2, rows=(attrs.evolve(v2.rows[0], balance=D(1)),)))
        v3 = self.must_load(store, s.pk)
        # then
        assert v1.version < v2.version < v3.version
        assert v3.rows[0].balance == 1

    def test_load_in_the_writing_transaction_sees_the_save(self, store: Store) -> None:
        """Given a customer inserted and saved in one transaction, when it is loaded and looked
        up in that transaction, then the saved state is seen before commit."""
        s = customer("cus_rw", email="rw@x.io")
        with store.transaction() as tx:
            tx.insert_customer(s)
            after = attrs.evolve(s, rows=(row("r", balance=4),))
            loaded = tx.load_customer(s.pk, for_update=True)
            assert loaded is not None
            tx.save_customer(CustomerChange.between(loaded, after))
            assert tx.customer_pk("cus_rw") == s.pk
            assert self.same(tx.load_customer(s.pk, for_update=True), after)
            assert [c.pk for c in tx.customers_by_email("RW@x.io")] == [s.pk]
            listed = tx.list_customers(limit=10, starting_after=None, email=None)
            assert self.same(listed[0], after)

    # -- delete ----------------------------------------------------------------------------------
    def test_delete_removes_the_customer_and_what_is_under_it(self, store: Store) -> None:
        """Given a customer with events, an invoice and an idempotency record, when it is
        deleted, then it and those records are gone and its id can be used again (C10)."""
        # given
        s = rich_customer("cus_del")
        self.insert(store, s)
        inv = invoice(s.pk)
        with store.transaction() as tx:
            tx.append_events([event(s.pk), event(s.pk)])
            tx.save_invoice(inv)
            tx.put_idempotency(idempotency(s.pk), expired=T0 - IDEMPOTENCY_TTL)
        # when
        with store.transaction() as tx:
            tx.delete_customer(s.pk)
        # then
        with store.transaction(write=False) as tx:
            assert tx.load_customer(s.pk) is None
            assert tx.customer_pk("cus_del") is None
            assert (
                tx.list_events(
                    s.pk, feature_id=None, start=None, end=None, limit=100, starting_after=None
                )
                == []
            )
            assert tx.list_invoices(s.pk) == []
            assert tx.get_invoice(inv.id) is None
            assert tx.get_idempotency("track", s.pk, "key-1") is None
            assert tx.customers_by_email(s.email or "") == []
            assert not tx.product_version_in_use("pro", 3)
        self.insert(store, customer("cus_del"))

    def test_delete_leaves_other_customers_alone(self, store: Store) -> None:
        """Given two customers with events, when one is deleted, the other keeps everything."""
        a, b = rich_customer(), customer(rows=(row("rb", balance=2),))
        self.insert(store, a, b)
        with store.transaction() as tx:
            tx.append_events([event(a.pk), event(b.pk, event_id="evt_b")])
        with store.transaction() as tx:
            tx.delete_customer(a.pk)
        with store.transaction(write=False) as tx:
            assert self.same(tx.load_customer(b.pk), b)
            events = tx.list_events(
                b.pk, feature_id=None, start=None, end=None, limit=100, starting_after=None
            )
            assert [e.id for e in events] == ["evt_b"]

    # -- queries -------------------------------------------------------------------------------
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
