"""The Store contract suite: every Store adapter must pass it unchanged.

Use it by subclassing ``StoreContract`` in a test module and implementing ``make_store`` (and,
for durable or multi-process stores, ``reopen_store``)::

    from tests.contract.store_contract import StoreContract

    class TestMyStore(StoreContract):
        def make_store(self) -> Store:
            return MyStore(self.tmp_path / "db")

        def reopen_store(self) -> Store:
            return MyStore(self.tmp_path / "db")

Tests that need something only some stores offer ask ``store.capabilities``
(``autumn_core.ports.StoreCapabilities``), never the backend's name. Every test reads as
given / when / then, and uses only the port (``Store``, ``StoreTransaction``) and the records of
``autumn_core.model``.
"""

from __future__ import annotations

from tests.contract._base import StoreTestBase
from tests.contract._customers import CustomerContract
from tests.contract._records import (
    ClaimContract,
    EventContract,
    IdempotencyContract,
    InvoiceContract,
    PendingContract,
    ProductVersionContract,
)
from tests.contract._transactions import DurabilityContract, TransactionContract


class StoreContract(
    CustomerContract,
    EventContract,
    IdempotencyContract,
    ClaimContract,
    InvoiceContract,
    PendingContract,
    ProductVersionContract,
    TransactionContract,
    DurabilityContract,
):
    """The whole Store contract. Subclass it and implement ``make_store``."""


__all__ = [
    "ClaimContract",
    "CustomerContract",
    "DurabilityContract",
    "EventContract",
    "IdempotencyContract",
    "InvoiceContract",
    "PendingContract",
    "ProductVersionContract",
    "StoreContract",
    "StoreTestBase",
    "TransactionContract",
]
