"""The machine on the demo catalog and the acceptance examples' catalogs: 300 runs of up to 20
calls each, on every store, with the in-process payment provider. No counterexample allowed."""

from __future__ import annotations

import time

import pytest

from autumn_core.testing import StoreFactory, catalog_machine, run_machine
from autumn_memory import MemoryGateway
from tests.testkit.conftest import STORES, catalogs

EXAMPLES = 300


def _store_params() -> list[object]:
    return [pytest.param(s) for s in STORES]


@pytest.mark.slow
@pytest.mark.parametrize("store_factory", _store_params(), indirect=True)
@pytest.mark.parametrize("name", sorted(catalogs()))
def test_no_counterexample(name: str, store_factory: StoreFactory) -> None:
    machine = catalog_machine(
        catalogs()[name], store_factory=store_factory, gateway_factory=MemoryGateway
    )
    began = time.monotonic()
    found = run_machine(machine, examples=EXAMPLES, seed_value=0)
    print(f"{name} on {store_factory.url.split(':')[0]}: {time.monotonic() - began:.1f}s")
    assert found is None, found.report if found else ""
