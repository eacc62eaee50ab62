"""The documentation: every public method of the engine's entry points and of the stores has a
docstring with an example, and the site has a page per concept."""

from __future__ import annotations

import inspect

import pytest

from autumn_core import Autumn
from autumn_core.facade_parts import Balances, Customers
from autumn_memory import MemoryStore
from autumn_postgres import PostgresStore
from autumn_sqlite import SqliteStore
from tests.cli.conftest import REPO

DOCUMENTED = [Autumn, Customers, Balances, MemoryStore, SqliteStore, PostgresStore]


@pytest.mark.parametrize("cls", DOCUMENTED, ids=lambda c: c.__name__)
def test_every_public_method_has_a_docstring_with_an_example(cls: type) -> None:
    missing = []
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        target = member.fget if isinstance(member, property) else member
        if not callable(target):
            continue
        doc = inspect.getdoc(target) or ""
        if "Example:" not in doc or "```python" not in doc:
            missing.append(name)
    assert missing == []
    assert "Example:" in (inspect.getdoc(cls) or "")


def test_the_site_has_a_page_per_concept() -> None:
    config = (REPO / "mkdocs.yml").read_text()
    for page in (
        "catalog.md",
        "customers.md",
        "check-track.md",
        "attach-trials.md",
        "stores.md",
        "stripe.md",
        "testing.md",
        "cli.md",
        "reference/autumn.md",
    ):
        assert f" {page}" in config
        assert (REPO / "docs" / page).is_file()
    assert "strict: true" in config
    assert "mkdocs build --strict" in (REPO / ".ci" / "run").read_text()


def test_the_catalog_page_documents_every_toml_key() -> None:
    from autumn_core import catalog_toml

    page = (REPO / "docs" / "catalog.md").read_text()
    keys = set().union(
        catalog_toml.TOP_KEYS,
        catalog_toml.FEATURE_KEYS,
        catalog_toml.PRODUCT_KEYS,
        catalog_toml.PRICE_KEYS,
        catalog_toml.TRIAL_KEYS,
        catalog_toml.ROLLOVER_KEYS,
        catalog_toml.TIER_KEYS,
        catalog_toml.FEATURE_ITEM_KEYS,
        catalog_toml.PRICED_ITEM_KEYS,
    )
    assert sorted(k for k in keys if f"| `{k}` |" not in page) == []
