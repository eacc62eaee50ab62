"""T5: a trial claim lost between planning and inserting re-plans the attach without a trial.

Planning reads the claims; carrying the plan out inserts them, and the store's unique
constraint decides. Between the two, on PostgreSQL's READ COMMITTED, another customer on the
same device can commit the same product's trial. ``RivalStore`` wraps a real store and makes
that happen at exactly that point: the first time the engine finds a fingerprint trial
unclaimed, the rival's claim is written into the store (in the same transaction, which is
what the engine would see after the rival's commit). The engine must then lose the insert and
re-plan: no trial, the first period charged. It runs on every store (``new_store``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from autumn_core import Autumn, Catalog, ManualClock
from autumn_core.ports import Store, StoreTransaction
from tests.conftest import StoreFactory
from tests.lifecycle.conftest import FEATURES, T0, D, totals
from tests.lifecycle.test_trial_idempotency_boundaries import trial_catalog


class RivalTransaction:
    def __init__(self, tx: StoreTransaction, store: RivalStore) -> None:
        self._tx = tx
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def trial_claimed(
        self, product_id: str, customer_pk: str, entity_id: str | None, fingerprint: str | None
    ) -> bool:
        taken = self._tx.trial_claimed(product_id, customer_pk, entity_id, fingerprint)
        if not taken and fingerprint is not None and self._store.armed:
            self._store.armed = False
            assert self._tx.claim_trial(product_id, "cus_rival", None, fingerprint)
        return taken


class RivalStore:
    """A real store whose next unclaimed fingerprint trial is claimed by a rival meanwhile."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self.armed = False

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[StoreTransaction]:
        with self.inner.transaction(write=write) as tx:
            yield RivalTransaction(tx, self)  # type: ignore[misc]

    def close(self) -> None:
        self.inner.close()


def test_a_fingerprint_claim_lost_after_planning_replans_without_a_trial(
    new_store: StoreFactory,
) -> None:
    """Given a product whose trial is unique per device, and a rival on device-1 claiming
    it after this attach has planned a trial, when the attach is carried out, then its claim
    insert loses, and the attach goes on without a trial (T5: not an error): active, $20."""
    # given
    rival = RivalStore(new_store())
    billing = Autumn(
        Catalog(features=FEATURES, products=trial_catalog()),
        store=rival,
        clock=ManualClock(T0),
    )
    billing.customers.create("c", fingerprint="device-1")
    rival.armed = True
    # when
    result = billing.attach("c", "pro-fp")
    # then
    assert not rival.armed, "the rival's claim was made between planning and inserting"
    assert result.trial_ends_at is None
    assert result.product is not None and result.product.status == "active"
    assert totals(billing) == [D("20.00")]
    billing.close()
