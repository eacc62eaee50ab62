"""SQLite's stored documents: packed heads, products and entities; plain balance rows and
events; older plain documents still read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autumn_core.testing.contract.builders import event, rich_customer
from autumn_sqlite import SqliteStore, codec
from autumn_sqlite.packing import pack, unpack


@given(st.text())
def test_unpack_gives_back_what_pack_took(text: str) -> None:
    """Given any text, when it is packed and unpacked, then it is the same text."""
    assert unpack(pack(text)) == text


def test_plain_text_is_read_as_it_is() -> None:
    """Given a document an older schema stored as plain JSON, then unpack returns it."""
    assert unpack('{"balance":"23.47"}') == '{"balance":"23.47"}'


def test_an_unknown_packing_is_refused() -> None:
    """Given a blob whose first byte names no dictionary, then unpack raises ValueError."""
    with pytest.raises(ValueError, match="unknown packing"):
        unpack(b"\x09abc")


def test_stored_forms_by_table(tmp_path: Path) -> None:
    """Given a rich customer with an event, then its head, products and entities are stored
    packed and smaller than their JSON, its balance rows and events as JSON text without the
    keys their columns hold, and everything loads back equal."""
    # given
    store = SqliteStore(tmp_path / "forms.db")
    state = rich_customer("cus_forms")
    with store.transaction() as tx:
        tx.insert_customer(state)
        tx.append_events([event(state.pk, event_id="evt_forms", value="0.5")])
    # when
    conn = sqlite3.connect(tmp_path / "forms.db")
    kinds = {
        table: {type(data) for (data,) in conn.execute(f"SELECT data FROM {table}")}
        for table in ("customers", "customer_products", "entities", "balance_rows", "events")
    }
    (row_doc,) = conn.execute("SELECT data FROM balance_rows LIMIT 1").fetchone()
    (event_doc,) = conn.execute("SELECT data FROM events").fetchone()
    (head,) = conn.execute("SELECT data FROM customers").fetchone()
    conn.close()
    # then
    assert kinds == {
        "customers": {bytes},
        "customer_products": {bytes},
        "entities": {bytes},
        "balance_rows": {str},
        "events": {str},
    }
    assert '"id"' not in row_doc
    assert "evt_forms" not in event_doc and state.pk not in event_doc
    assert len(head) < len(unpack(head).encode())
    assert codec.load(unpack(head))["email"] == state.email
    with store.transaction(write=False) as tx:
        loaded = tx.load_customer(state.pk)
        events = tx.list_events(
            state.pk, feature_id=None, start=None, end=None, limit=5, starting_after=None
        )
    assert loaded is not None and loaded.rows == state.rows and loaded.entities == state.entities
    assert [(e.id, e.customer_pk) for e in events] == [("evt_forms", state.pk)]
    store.close()
