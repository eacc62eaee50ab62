"""Store contract, part 2: the records beside the aggregate (docs/rules.md 2.7, I1-I5)."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from autumn_core.app.unit import IDEMPOTENCY_TTL
from autumn_core.errors import UniqueViolation
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
)


def _events(tx: StoreTransaction, pk: str, **kw: object) -> list[str]:
    args: dict[str, object] = {
        "feature_id": None,
        "start": None,
        "end": None,
        "limit": 100,
        "starting_after": None,
    }
    args.update(kw)
    return [e.id for e in tx.list_events(pk, **args)]  # type: ignore[arg-type]


class EventContract(StoreTestBase):
    def test_events_round_trip_in_insertion_order(self, store: Store) -> None:
        """Given events appended over two transactions (with exact values, properties, an
        entity, an event name without feature), when listed, then they come back equal and
        oldest first."""
        # given
        c = customer()
        self.insert(store, c)
        first = [
            event(c.pk, value="0.1", properties={"model": "gpt", "tokens": 12}),
            event(c.pk, value="-2.5", entity_id="ent_1", timestamp=T0 - timedelta(days=1)),
        ]
        second = [event(c.pk, feature_id=None, event_name="chat", value="1000000000000000")]
        # when
        with store.transaction() as tx:
            tx.append_events(first)
        with store.transaction() as tx:
            tx.append_events(second)
        # then
        with store.transaction(write=False) as tx:
            listed = tx.list_events(
                c.pk, feature_id=None, start=None, end=None, limit=100, starting_after=None
            )
        assert listed == first + second
        assert [str(e.value) for e in listed] == ["0.1", "-2.5", "1000000000000000"]

    def test_events_filter_by_feature_and_time(self, store: Store) -> None:
        """Given events of two features at three instants, when filtered by feature and by a
        [start, end) window, then start is inclusive and end exclusive."""
        # given
        c = customer()
        self.insert(store, c)
        t1, t2, t3 = T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)
        with store.transaction() as tx:
            tx.append_events(
                [
                    event(c.pk, event_id="m1", timestamp=t1),
                    event(c.pk, event_id="s1", feature_id="seats", timestamp=t1),
                    event(c.pk, event_id="m2", timestamp=t2),
                    event(c.pk, event_id="m3", timestamp=t3),
                ]
            )
        # when / then
        with store.transaction(write=False) as tx:
            assert _events(tx, c.pk, feature_id="messages") == ["m1", "m2", "m3"]
            assert _events(tx, c.pk, feature_id="seats") == ["s1"]
            assert _events(tx, c.pk, start=t2) == ["m2", "m3"]
            assert _events(tx, c.pk, end=t2) == ["m1", "s1"]
            assert _events(tx, c.pk, feature_id="messages", start=t1, end=t3) == ["m1", "m2"]

    def test_events_page_with_starting_after(self, store: Store) -> None:
        """Given five events, when paged two at a time with ``starting_after``, then the pages
        cover them in order; an id that is not this customer's event gives an empty page."""
        # given
        c, other = customer(), customer()
        self.insert(store, c, other)
        ids = [f"e{i}" for i in range(5)]
        with store.transaction() as tx:
            tx.append_events([event(c.pk, event_id=i) for i in ids])
            tx.append_events([event(other.pk, event_id="x0")])
        # when
        with store.transaction(write=False) as tx:
            p1 = _events(tx, c.pk, limit=2)
            p2 = _events(tx, c.pk, limit=2, starting_after=p1[-1])
            p3 = _events(tx, c.pk, limit=2, starting_after=p2[-1])
            p4 = _events(tx, c.pk, limit=2, starting_after=p3[-1])
            unknown = _events(tx, c.pk, starting_after="nope")
            foreign = _events(tx, c.pk, starting_after="x0")
            filtered = _events(tx, c.pk, starting_after="e1", feature_id="messages", limit=2)
        # then
        assert [p1, p2, p3, p4] == [["e0", "e1"], ["e2", "e3"], ["e4"], []]
        assert unknown == []
        assert foreign == []
        assert filtered == ["e2", "e3"]

    def test_events_are_per_customer(self, store: Store) -> None:
        """Given events of two customers, when one customer's events are listed, then only its
        own are returned."""
        a, b = customer(), customer()
        self.insert(store, a, b)
        with store.transaction() as tx:
            tx.append_events([event(a.pk, event_id="a1"), event(b.pk, event_id="b1")])
            tx.append_events([event(a.pk, event_id="a2")])
        with store.transaction(write=False) as tx:
            assert _events(tx, a.pk) == ["a1", "a2"]
            assert _events(tx, b.pk) == ["b1"]

    def test_events_are_seen_in_the_writing_transaction(self, store: Store) -> None:
        """Given events appended in an open transaction, then that transaction lists them."""
        c = customer()
        with store.transaction() as tx:
            tx.insert_customer(c)
            tx.append_events([event(c.pk, event_id="w1")])
            assert _events(tx, c.pk) == ["w1"]


class IdempotencyContract(StoreTestBase):
    def test_put_then_get(self, store: Store) -> None:
        """Given a stored idempotency record, when it is read by (operation, customer, key),
        then it is equal; an unknown key reads as None."""
        # given
        c = customer()
        self.insert(store, c)
        rec = idempotency(c.pk, result={"event_id": "evt_9", "value": "25.5", "list": [1, None]})
        # when
        with store.transaction() as tx:
            tx.put_idempotency(rec, expired=rec.created_at - IDEMPOTENCY_TTL)
        # then
        with store.transaction(write=False) as tx:
            assert tx.get_idempotency("track", c.pk, "key-1") == rec
            assert tx.get_idempotency("track", c.pk, "other") is None

    def test_live_key_is_refused(self, store: Store) -> None:
        """Given a record created at T, when the same key is put at T + 24 h - 1 us, then
        UniqueViolation is raised and the first record is kept (I1)."""
        # given
        c = customer()
        self.insert(store, c)
        first = idempotency(c.pk, fingerprint="first")
        with store.transaction() as tx:
            tx.put_idempotency(first, expired=first.created_at - IDEMPOTENCY_TTL)
        # when / then
        late = idempotency(
            c.pk, fingerprint="second", created_at=T0 + timedelta(hours=24, microseconds=-1)
        )
        with pytest.raises(UniqueViolation), store.transaction() as tx:
            tx.put_idempotency(late, expired=late.created_at - IDEMPOTENCY_TTL)
        with store.transaction(write=False) as tx:
            assert tx.get_idempotency("track", c.pk, "key-1") == first

    def test_key_is_replaced_after_24_hours(self, store: Store) -> None:
        """Given a record created at T, when the same key is put at T + 24 h, then the new
        record replaces it (the key was forgotten)."""
        # given
        c = customer()
        self.insert(store, c)
        with store.transaction() as tx:
            tx.put_idempotency(idempotency(c.pk, fingerprint="first"), expired=T0 - IDEMPOTENCY_TTL)
        # when
        fresh = idempotency(c.pk, fingerprint="second", created_at=T0 + timedelta(hours=24))
        with store.transaction() as tx:
            tx.put_idempotency(fresh, expired=fresh.created_at - IDEMPOTENCY_TTL)
        # then
        with store.transaction(write=False) as tx:
            assert tx.get_idempotency("track", c.pk, "key-1") == fresh

    def test_keys_are_scoped_by_operation_and_customer(self, store: Store) -> None:
        """Given a key used for track by customer A, when the same key is put for attach by A
        and for track by B, then all three records coexist."""
        a, b = customer(), customer()
        self.insert(store, a, b)
        recs = [
            idempotency(a.pk, operation="track"),
            idempotency(a.pk, operation="attach", fingerprint="x"),
            idempotency(b.pk, operation="track", fingerprint="y"),
        ]
        with store.transaction() as tx:
            for rec in recs:
                tx.put_idempotency(rec, expired=rec.created_at - IDEMPOTENCY_TTL)
        with store.transaction(write=False) as tx:
            for rec in recs:
                assert tx.get_idempotency(rec.operation, rec.customer_pk, rec.key) == rec


class ClaimContract(StoreTestBase):
    """Trial claims, renewal markers and gateway event ids: store-enforced uniqueness."""

    def test_subject_claims_once(self, store: Store) -> None:
        """Given no claims, when customer A claims the pro trial twice, then the first claim
        succeeds and the second returns False."""
        a = customer()
        self.insert(store, a)
        with store.transaction() as tx:
            assert tx.claim_trial("pro", a.pk, None, None)
        with store.transaction() as tx:
            assert not tx.claim_trial("pro", a.pk, None, None)
            assert tx.trial_claimed("pro", a.pk, None, None)

    def test_claims_are_scoped_by_product_and_entity(self, store: Store) -> None:
        """Given A claimed pro for the customer itself, when A claims team, and pro for entity
        e1 and e2, then each succeeds once; None and "" name the same (customer) subject."""
        a = customer()
        self.insert(store, a)
        with store.transaction() as tx:
            assert tx.claim_trial("pro", a.pk, None, None)
            assert tx.claim_trial("team", a.pk, None, None)
            assert tx.claim_trial("pro", a.pk, "e1", None)
            assert tx.claim_trial("pro", a.pk, "e2", None)
            assert not tx.claim_trial("pro", a.pk, "e1", None)
            assert not tx.claim_trial("pro", a.pk, "", None)

    def test_fingerprint_blocks_another_customer_and_inserts_nothing(self, store: Store) -> None:
        """Given A claimed pro with fingerprint F, when B claims pro with F, then it returns
        False and B has no subject claim (B can still claim without F)."""
        # given
        a, b = customer(), customer()
        self.insert(store, a, b)
        with store.transaction() as tx:
            assert tx.claim_trial("pro", a.pk, None, "fp-1")
        # when
        with store.transaction() as tx:
            refused = tx.claim_trial("pro", b.pk, None, "fp-1")
        # then
        assert not refused
        with store.transaction() as tx:
            assert tx.trial_claimed("pro", b.pk, None, "fp-1")
            assert not tx.trial_claimed("pro", b.pk, None, None)
            assert tx.claim_trial("pro", b.pk, None, "fp-2")

    def test_existing_subject_claim_records_no_fingerprint(self, store: Store) -> None:
        """Given A claimed pro without a fingerprint, when A claims pro again with F, then it
        returns False and F stays free for another customer."""
        a, b = customer(), customer()
        self.insert(store, a, b)
        with store.transaction() as tx:
            assert tx.claim_trial("pro", a.pk, None, None)
        with store.transaction() as tx:
            assert not tx.claim_trial("pro", a.pk, None, "fp-1")
        with store.transaction() as tx:
            assert not tx.trial_claimed("pro", b.pk, None, "fp-1")
            assert tx.claim_trial("pro", b.pk, None, "fp-1")

    def test_fingerprints_are_per_product(self, store: Store) -> None:
        """Given A claimed pro with F, when B claims team with F, then it succeeds."""
        a, b = customer(), customer()
        self.insert(store, a, b)
        with store.transaction() as tx:
            assert tx.claim_trial("pro", a.pk, None, "fp-1")
            assert tx.claim_trial("team", b.pk, None, "fp-1")

    def test_fingerprint_claims_survive_delete_but_subject_claims_do_not(
        self, store: Store
    ) -> None:
        """Given A claimed pro with F and was deleted, when a new customer claims pro with F,
        then it is refused; asked for A's old pk without F, no claim remains (C10)."""
        # given
        a, c = customer(), customer()
        self.insert(store, a, c)
        with store.transaction() as tx:
            assert tx.claim_trial("pro", a.pk, None, "fp-1")
        with store.transaction() as tx:
            tx.delete_customer(a.pk)
        # when / then
        with store.transaction() as tx:
            assert not tx.trial_claimed("pro", a.pk, None, None)
            assert tx.trial_claimed("pro", c.pk, None, "fp-1")
            assert not tx.claim_trial("pro", c.pk, None, "fp-1")

    def test_renewal_marker_claims_once(self, store: Store) -> None:
        """Given a renewal of cp_1 at period start P was claimed, when it is claimed again,
        then False; another period or product instance is a new claim."""
        with store.transaction() as tx:
            assert tx.claim_renewal("cp_1", T0)
        with store.transaction() as tx:
            assert not tx.claim_renewal("cp_1", T0)
            assert tx.claim_renewal("cp_1", T0 + timedelta(days=31))
            assert tx.claim_renewal("cp_2", T0)

    def test_gateway_event_claims_once(self, store: Store) -> None:
        """Given gateway event evt_1 was claimed, when it is claimed again, then False."""
        with store.transaction() as tx:
            assert tx.claim_gateway_event("evt_1")
        with store.transaction() as tx:
            assert not tx.claim_gateway_event("evt_1")
            assert tx.claim_gateway_event("evt_2")


class InvoiceContract(StoreTestBase):
    def test_invoice_round_trip_and_lookup(self, store: Store) -> None:
        """Given an invoice with exact amounts and lines, when saved, then it is found by id,
        by gateway id and in its customer's list; unknown ids read as None."""
        # given
        c = customer()
        self.insert(store, c)
        inv = invoice(c.pk, total="23.47", gateway_invoice_id="in_123")
        # when
        with store.transaction() as tx:
            tx.save_invoice(inv)
        # then
        with store.transaction(write=False) as tx:
            assert tx.get_invoice(inv.id) == inv
            assert tx.find_invoice_by_gateway_id("in_123") == inv
            assert tx.list_invoices(c.pk) == [inv]
            assert tx.get_invoice("inv_missing") is None
            assert tx.find_invoice_by_gateway_id("in_missing") is None
            assert str(tx.list_invoices(c.pk)[0].lines[1].amount) == "0.10"

    def test_saving_again_replaces_in_place(self, store: Store) -> None:
        """Given invoices 1, 2, 3 of a customer, when invoice 1 is saved again as void with a
        gateway id, then it is replaced and the list order is unchanged."""
        # given
        c = customer()
        self.insert(store, c)
        invs = [invoice(c.pk, f"inv_{i}", status="open", total=str(i)) for i in (1, 2, 3)]
        with store.transaction() as tx:
            for inv in invs:
                tx.save_invoice(inv)
        # when
        void = invoice(c.pk, "inv_1", status="void", total="-1", gateway_invoice_id="in_1")
        with store.transaction() as tx:
            tx.save_invoice(void)
        # then
        with store.transaction(write=False) as tx:
            assert tx.list_invoices(c.pk) == [void, invs[1], invs[2]]
            assert tx.find_invoice_by_gateway_id("in_1") == void
            assert tx.get_invoice("inv_1") == void
            assert tx.get_invoice("inv_1").total == D(-1)  # type: ignore[union-attr]

    def test_invoices_are_per_customer(self, store: Store) -> None:
        """Given invoices of two customers, when one's invoices are listed, only its own are."""
        a, b = customer(), customer()
        self.insert(store, a, b)
        ia, ib = invoice(a.pk), invoice(b.pk)
        with store.transaction() as tx:
            tx.save_invoice(ia)
            tx.save_invoice(ib)
        with store.transaction(write=False) as tx:
            assert tx.list_invoices(a.pk) == [ia]
            assert tx.list_invoices(b.pk) == [ib]


class PendingContract(StoreTestBase):
    def test_pending_put_get_replace_delete_list(self, store: Store) -> None:
        """Given pending records of two kinds, when one is replaced and one deleted, then get
        and list (by kind, ordered by key) reflect exactly that."""
        # given
        with store.transaction() as tx:
            tx.put_pending(pending("k2"))
            tx.put_pending(pending("k1"))
            tx.put_pending(pending("k3", kind="operation"))
        # when
        replaced = pending("k2", "pk_other")
        with store.transaction() as tx:
            tx.put_pending(replaced)
            tx.delete_pending("k1")
            tx.delete_pending("k_missing")
        # then
        with store.transaction(write=False) as tx:
            assert tx.get_pending("k2") == replaced
            assert tx.get_pending("k1") is None
            assert tx.list_pending("checkout") == [replaced]
            assert [r.key for r in tx.list_pending("operation")] == ["k3"]
            assert tx.list_pending("nothing") == []

    def test_pending_insert_refuses_a_taken_key(self, store: Store) -> None:
        """Given a pending record, when another is inserted under its key (insert_pending),
        then UniqueViolation is raised by the end of the transaction and nothing it wrote is
        kept; a new key inserts."""
        # given
        first = pending("k1")
        with store.transaction() as tx:
            tx.insert_pending(first)
        # when
        with pytest.raises(UniqueViolation), store.transaction() as tx:
            tx.put_pending(pending("k_other"))
            tx.insert_pending(pending("k1", "pk_other"))
        with store.transaction() as tx:
            tx.insert_pending(pending("k2"))
        # then
        with store.transaction(write=False) as tx:
            assert tx.get_pending("k1") == first
            assert tx.get_pending("k_other") is None
            assert [r.key for r in tx.list_pending("checkout")] == ["k1", "k2"]

    def test_pending_put_rewrites_data_owner_and_kind(self, store: Store) -> None:
        """Given a pending record, when it is put again with new data, then with another owner
        and kind, then each put replaces the whole record."""
        with store.transaction() as tx:
            tx.put_pending(pending("k1"))
        data = attrs.evolve(pending("k1"), payload={"status": "confirmed"})
        with store.transaction() as tx:
            tx.put_pending(data)
        with store.transaction(write=False) as tx:
            assert tx.get_pending("k1") == data
        moved = pending("k1", "pk_other", kind="operation")
        with store.transaction() as tx:
            tx.put_pending(moved)
        with store.transaction(write=False) as tx:
            assert tx.get_pending("k1") == moved
            assert tx.list_pending("checkout") == []
            assert tx.list_pending("operation") == [moved]

    def test_pending_list_is_ordered_by_key(self, store: Store) -> None:
        """Given pending records put in the order b, c, a, when listed, then a, b, c."""
        with store.transaction() as tx:
            for key in ("b", "c", "a"):
                tx.put_pending(pending(key))
        with store.transaction(write=False) as tx:
            assert [r.key for r in tx.list_pending("checkout")] == ["a", "b", "c"]


class ProductVersionContract(StoreTestBase):
    def test_versions_are_saved_replaced_and_sorted(self, store: Store) -> None:
        """Given versions saved out of order, when one is saved again, then load returns them
        sorted by (product_id, version), the replaced one with its new definition."""
        # given
        with store.transaction() as tx:
            tx.save_product_version(product_version("pro", 2, '{"v": 2}'))
            tx.save_product_version(product_version("free", 1))
            tx.save_product_version(product_version("pro", 1, '{"v": 1}'))
        # when
        with store.transaction() as tx:
            tx.save_product_version(product_version("pro", 2, '{"v": "2b"}'))
        # then
        with store.transaction(write=False) as tx:
            assert tx.load_product_versions() == [
                product_version("free", 1),
                product_version("pro", 1, '{"v": 1}'),
                product_version("pro", 2, '{"v": "2b"}'),
            ]
