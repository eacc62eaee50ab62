"""Store contract, the outbox (docs/rules.md EO2-EO4): entries exist exactly when the
transaction that wrote them commits; deliverers see the due ones, oldest first."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import attrs
import pytest

from autumn_core.outbound import CUSTOMER_PRODUCTS_UPDATED, OutboundEvent, OutboxEntry
from autumn_core.ports import Store
from autumn_core.testing.contract._base import StoreTestBase
from autumn_core.testing.contract.builders import T0


def outbox_entry(n: int, *, at_minutes: int = 0) -> OutboxEntry:
    return OutboxEntry(
        OutboundEvent(
            id=f"wev_{n:04d}",
            type=CUSTOMER_PRODUCTS_UPDATED,
            customer_id=f"cus-{n}",
            entity_id=None,
            occurred_at=T0 + timedelta(minutes=at_minutes),
            data={"amount": Decimal("12.50"), "items": [{"quantity": Decimal("3")}]},
        )
    )


class OutboxContract(StoreTestBase):
    def test_entries_round_trip_exactly(self, store: Store) -> None:
        """Given an entry with decimal data, when written and listed, then it comes back equal
        (amounts exact)."""
        entry = outbox_entry(1)
        with store.transaction() as tx:
            tx.append_outbox([entry])
        with store.transaction(write=False) as tx:
            listed = tx.list_outbox(status=None, limit=10, starting_after=None)
        assert listed == [entry]
        assert listed[0].event.data["amount"] == Decimal("12.50")

    def test_a_rolled_back_transaction_leaves_no_entry(self, store: Store) -> None:
        """Given a transaction that writes an entry and then fails, then the outbox is empty."""
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.append_outbox([outbox_entry(1)])
            raise RuntimeError("the change failed")
        with store.transaction(write=False) as tx:
            assert tx.list_outbox(status=None, limit=10, starting_after=None) == []

    def test_due_entries_oldest_first_and_only_pending(self, store: Store) -> None:
        """Given entries due at different times, one delivered, when a deliverer asks at a
        time, then it gets the pending ones due by then, oldest event first, up to the limit."""
        a, b, c, d = (outbox_entry(n, at_minutes=n) for n in (1, 2, 3, 4))
        with store.transaction() as tx:
            tx.append_outbox([a, b, c, d])
        with store.transaction() as tx:
            tx.save_outbox(attrs.evolve(a, status="delivered", delivered_to=("app",)))
            tx.save_outbox(attrs.evolve(b, next_attempt_at=T0 + timedelta(hours=1)))
        with store.transaction() as tx:
            assert [e.id for e in tx.due_outbox(T0 + timedelta(minutes=3), 10)] == ["wev_0003"]
            assert [e.id for e in tx.due_outbox(T0 + timedelta(hours=1), 10)] == [
                "wev_0002",
                "wev_0003",
                "wev_0004",
            ]
            assert [e.id for e in tx.due_outbox(T0 + timedelta(hours=1), 1)] == ["wev_0002"]
        with store.transaction(write=False) as tx:
            delivered = tx.list_outbox(status="delivered", limit=10, starting_after=None)
            page = tx.list_outbox(status=None, limit=2, starting_after="wev_0001")
        assert [(e.id, e.delivered_to) for e in delivered] == [("wev_0001", ("app",))]
        assert [e.id for e in page] == ["wev_0002", "wev_0003"]

    def test_purge_deletes_only_settled_entries_settled_before(self, store: Store) -> None:
        """Given a delivered, a dead and a pending entry settled at different times, when the
        outbox is purged, then only the settled ones before the cut-off go, up to the limit."""
        a, b, c, d = (outbox_entry(n) for n in (1, 2, 3, 4))
        with store.transaction() as tx:
            tx.append_outbox([a, b, c, d])
        with store.transaction() as tx:
            tx.save_outbox(attrs.evolve(a, status="delivered", next_attempt_at=T0))
            tx.save_outbox(attrs.evolve(b, status="dead", next_attempt_at=T0))
            later = T0 + timedelta(days=2)
            tx.save_outbox(attrs.evolve(c, status="delivered", next_attempt_at=later))
        cut = T0 + timedelta(days=1)
        with store.transaction() as tx:
            assert tx.purge_outbox(cut, 1) == 1
        with store.transaction() as tx:
            assert tx.purge_outbox(cut, 10) == 1
            assert tx.purge_outbox(cut, 10) == 0
        with store.transaction(write=False) as tx:
            left = tx.list_outbox(status=None, limit=10, starting_after=None)
        assert [(e.id, e.status) for e in left] == [
            ("wev_0003", "delivered"),
            ("wev_0004", "pending"),
        ]
