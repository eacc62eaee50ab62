"""The fixture and helpers every part of the Store contract shares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from autumn_core.changes import CustomerChange
from autumn_core.model import CustomerState
from autumn_core.ports import Store


class StoreTestBase:
    """Owns the ``store`` fixture; adapters implement ``make_store`` (and ``reopen_store``)."""

    #: A fresh directory for this test, set before ``make_store`` is called.
    tmp_path: Path

    def make_store(self) -> Store:
        """Return a new, empty store (a file under ``self.tmp_path``, a fresh schema...)."""
        raise NotImplementedError

    def reopen_store(self) -> Store:
        """Return another ``Store`` object over the data of the one ``make_store`` returned.

        Needed only by stores whose capabilities say ``durable`` or ``multi_process``.
        """
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        self.tmp_path = tmp_path
        self._opened: list[Store] = []
        store = self.make_store()
        yield store
        store.close()
        for other in self._opened:
            other.close()

    def reopen(self) -> Store:
        """``reopen_store``, closed again at the end of the test."""
        other = self.reopen_store()
        self._opened.append(other)
        return other

    # -- helpers: one call, one transaction -------------------------------------------------
    @staticmethod
    def insert(store: Store, *states: CustomerState) -> None:
        with store.transaction() as tx:
            for state in states:
                tx.insert_customer(state)

    @staticmethod
    def load(store: Store, pk: str) -> CustomerState | None:
        with store.transaction(write=False) as tx:
            return tx.load_customer(pk)

    @staticmethod
    def must_load(store: Store, pk: str) -> CustomerState:
        with store.transaction(write=False) as tx:
            state = tx.load_customer(pk)
        assert state is not None, f"customer {pk} should exist"
        return state

    @staticmethod
    def save(store: Store, before: CustomerState, after: CustomerState) -> None:
        with store.transaction() as tx:
            tx.save_customer(CustomerChange.between(before, after))

    @staticmethod
    def same(loaded: CustomerState | None, expected: CustomerState) -> bool:
        """Equal but for ``version``, which the store owns."""
        return loaded is not None and attrs.evolve(loaded, version=expected.version) == expected
