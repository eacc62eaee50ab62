"""The Store contract suite: every Store adapter must pass it unchanged.

It is a pytest suite (it needs ``pytest`` and ``hypothesis``, the ``dev`` extra); nothing else in
``autumn_core`` imports it. Use it by subclassing ``StoreContract`` in a test module and
implementing ``make_store`` (and, for durable or multi-process stores, ``reopen_store``); see
``CONTRACT.md`` beside this module::

    from autumn_core.testing.contract import StoreContract

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

import pytest

# The parts are installed modules, not test files: ask pytest to rewrite their asserts too, so
# a failing contract test explains itself. This must run before they are imported.
pytest.register_assert_rewrite(
    *(
        f"{__name__}.{part}"
        for part in (
            "_base",
            "_customers",
            "_customer_queries",
            "_outbox",
            "_records",
            "_transactions",
        )
    )
)

from autumn_core.testing.contract._base import StoreTestBase  # noqa
from autumn_core.testing.contract._customer_queries import CustomerQueryContract  # noqa
from autumn_core.testing.contract._customers import CustomerContract  # noqa
from autumn_core.testing.contract._outbox import OutboxContract  # noqa
from autumn_core.testing.contract._records import (  # noqa
    ClaimContract,
    EventContract,
    IdempotencyContract,
    InvoiceContract,
    PendingContract,
    ProductVersionContract,
)
from autumn_core.testing.contract._transactions import (  # noqa
    DurabilityContract,
    TransactionContract,
)


class StoreContract(
    CustomerContract,
    CustomerQueryContract,
    EventContract,
    IdempotencyContract,
    ClaimContract,
    InvoiceContract,
    PendingContract,
    ProductVersionContract,
    OutboxContract,
    TransactionContract,
    DurabilityContract,
):
    """The whole Store contract. Subclass it and implement ``make_store``."""


__all__ = [
    "ClaimContract",
    "CustomerContract",
    "CustomerQueryContract",
    "DurabilityContract",
    "EventContract",
    "IdempotencyContract",
    "InvoiceContract",
    "OutboxContract",
    "PendingContract",
    "ProductVersionContract",
    "StoreContract",
    "StoreTestBase",
    "TransactionContract",
]
