"""SqliteStore schema versions: fresh files, old files upgraded with data intact, newer refused."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from decimal import Decimal
from decimal import Decimal as D
from pathlib import Path

import attrs
import pytest

from autumn_core.changes import CustomerChange
from autumn_core.errors import StoreError
from autumn_core.model import EventRecord
from autumn_sqlite import SqliteStore, schema

FIXTURES = Path(__file__).parent / "fixtures"


def _restore_v1(path: Path) -> None:
    """Build a database file from the frozen version-1 fixture."""
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / "schema_v1.sql").read_text())
    conn.close()


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _assert_v1_data_intact(
    store: SqliteStore,
    later_events: tuple[tuple[str, Decimal], ...] = (),
    messages_balance: Decimal = Decimal("23.47"),
) -> None:
    """The fixture's records, checked with literal values (not with today's builders);
    ``later_events``: the first customer's events a later fixture added;
    ``messages_balance``: the first row's balance after a later fixture's save."""
    with store.transaction(write=False) as tx:
        assert tx.customer_pk("cus_v1") == "pk_v1"
        rich = tx.load_customer("pk_v1")
        assert rich is not None
        assert rich.email == "Rich@Example.com"
        assert rich.metadata["tags"] == ["a", "b"]
        assert [r.id for r in rich.rows] == ["row_msgs", "row_seats", "row_grant"]
        assert rich.rows[0].balance == messages_balance
        assert rich.rows[0].rollovers[0].balance == Decimal("0.1")
        assert rich.rows[2].balance == Decimal("-1000000000000000")
        assert rich.products[0].quantities == {"seats": Decimal(3), "credits": Decimal("2500.50")}
        assert [e.id for e in rich.entities] == ["ent_1", "ent_2"]
        assert [c.pk for c in tx.customers_by_email("CFO@bigco.com")] == ["pk_pre"]
        events = tx.list_events(
            "pk_v1", feature_id=None, start=None, end=None, limit=10, starting_after=None
        )
        assert [(e.id, e.value) for e in events] == [
            ("evt_v1_1", Decimal("0.1")),
            ("evt_v1_2", Decimal("-2.5")),
            *later_events,
        ]
        invoice = tx.find_invoice_by_gateway_id("in_v1")
        assert invoice is not None
        assert invoice.total == Decimal("23.47")
        assert tx.get_idempotency("track", "pk_v1", "key-1") is not None
        assert tx.trial_claimed("pro", "pk_other", None, "fp-v1")
        assert tx.get_pending("pend_v1") is not None
        assert [(v.product_id, v.version) for v in tx.load_product_versions()] == [("pro", 3)]
        assert tx.product_version_in_use("pro", 3)


class TestSchemaVersions:
    def test_fresh_file_is_created_at_the_current_version(self, tmp_path: Path) -> None:
        """Given no file, when a store opens it, then the schema is at the current version
        and marked as an autumn database."""
        # when
        store = SqliteStore(tmp_path / "new.db")
        # then
        assert store.schema_version == schema.current_version()
        store.close()
        conn = sqlite3.connect(tmp_path / "new.db")
        assert conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
        conn.close()

    def test_version_1_fixture_opens_with_its_data_intact(self, tmp_path: Path) -> None:
        """Given a database written by schema version 1 (a frozen fixture), when the current
        store opens it, then it is at the current version with every record intact, and
        usable for writes."""
        # given
        path = tmp_path / "v1.db"
        _restore_v1(path)
        assert _user_version(path) == 1
        # when
        store = SqliteStore(path)
        # then
        assert store.schema_version == schema.current_version()
        _assert_v1_data_intact(store)
        with store.transaction() as tx:
            assert not tx.claim_gateway_event("gevt_v1")
            tx.delete_customer("pk_v1")
        store.close()

    def test_reopening_keeps_the_data(self, tmp_path: Path) -> None:
        """Given the upgraded fixture, when it is closed and opened again (no migration left
        to run), then the data is still intact."""
        path = tmp_path / "v1.db"
        _restore_v1(path)
        SqliteStore(path).close()
        store = SqliteStore(path)
        _assert_v1_data_intact(store)
        store.close()

    def test_version_2_lists_customers_through_the_order_index(self, tmp_path: Path) -> None:
        """Given a version-1 database, when the current store opens it, then the customer
        order index replaces the old one and an unfiltered page is read through it, in
        (created_at, id, pk) order."""
        # given
        path = tmp_path / "v1.db"
        _restore_v1(path)
        # when
        store = SqliteStore(path)
        # then
        conn = sqlite3.connect(path)
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT pk FROM customers"
            " ORDER BY created_us, id IS NULL, id, pk LIMIT 10"
        ).fetchall()
        conn.close()
        assert "customers_order" in indexes
        assert "customers_created" not in indexes
        assert "customers_order" in " ".join(str(r[-1]) for r in plan)
        assert "TEMP B-TREE" not in " ".join(str(r[-1]) for r in plan)
        with store.transaction(write=False) as tx:
            listed = tx.list_customers(limit=10, starting_after=None, email=None)
            assert sorted(c.pk for c in listed) == ["pk_pre", "pk_v1"]
            keys = [(c.created_at, c.id is None, c.id or "", c.pk) for c in listed]
            assert keys == sorted(keys)
        store.close()

    def test_a_new_step_upgrades_version_1(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Given a version-1 database and code with one more migration step, when the store
        opens it, then the step runs once (after the released ones), the data is intact, and a
        store without that step then refuses the file as newer."""
        # given
        path = tmp_path / "v1.db"
        _restore_v1(path)
        step = (
            "ALTER TABLE customers ADD COLUMN tier TEXT",
            "UPDATE customers SET tier = 'gold' WHERE id IS NOT NULL",
            "CREATE INDEX customers_tier ON customers (tier)",
        )
        extra = schema.current_version() + 1
        monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, step])
        # when
        store = SqliteStore(path)
        # then
        assert store.schema_version == extra
        _assert_v1_data_intact(store)
        store.close()
        SqliteStore(path).close()  # already at the new version: nothing runs again
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT pk, tier FROM customers ORDER BY pk").fetchall() == [
            ("pk_pre", None),
            ("pk_v1", "gold"),
        ]
        conn.close()
        monkeypatch.undo()
        with pytest.raises(StoreError, match="newer"):
            SqliteStore(path)

    def test_a_failing_step_changes_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Given a version-1 database and a new last step that fails half-way, when the store
        opens it, then StoreError is raised and the file is still version 1, untouched."""
        # given
        path = tmp_path / "v1.db"
        _restore_v1(path)
        broken = ("ALTER TABLE customers ADD COLUMN tier TEXT", "THIS IS NOT SQL")
        monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, broken])
        # when / then
        with pytest.raises(StoreError):
            SqliteStore(path)
        monkeypatch.undo()
        assert _user_version(path) == 1
        conn = sqlite3.connect(path)
        columns = [r[1] for r in conn.execute("PRAGMA table_info(customers)")]
        conn.close()
        assert "tier" not in columns
        store = SqliteStore(path)
        _assert_v1_data_intact(store)
        store.close()

    def test_newer_database_is_refused(self, tmp_path: Path) -> None:
        """Given a database whose schema version is beyond this code's, when a store opens it,
        then StoreError says it is newer, and the file is not changed."""
        # given
        path = tmp_path / "future.db"
        SqliteStore(path).close()
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {schema.current_version() + 1}")
        conn.close()
        # when / then
        with pytest.raises(StoreError, match="newer") as raised:
            SqliteStore(path)
        assert "upgrade autumn_sqlite" in raised.value.message
        assert _user_version(path) == schema.current_version() + 1

    def test_foreign_database_is_refused(self, tmp_path: Path) -> None:
        """Given a SQLite file of another application (tables, no autumn schema), when a store
        opens it, then StoreError is raised and its tables are untouched."""
        # given
        path = tmp_path / "other.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.commit()
        conn.close()
        # when / then
        with pytest.raises(StoreError, match="no autumn schema"):
            SqliteStore(path)
        conn = sqlite3.connect(path)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        conn.close()
        assert tables == ["notes"]

    def test_concurrent_first_opens_migrate_once(self, tmp_path: Path) -> None:
        """Given no file, when 6 threads open stores on it at once, then all succeed and the
        schema is created once."""
        path = tmp_path / "race.db"
        stores: list[SqliteStore] = []
        errors: list[BaseException] = []
        start = threading.Barrier(6)

        def open_it() -> None:
            start.wait()
            try:
                stores.append(SqliteStore(path))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert {s.schema_version for s in stores} == {schema.current_version()}
        for s in stores:
            s.close()


def _restore(path: Path, version: int) -> None:
    """Build a database file from the frozen fixture written by schema ``version``."""
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / f"schema_v{version}.sql").read_text())
    conn.close()


#: Every released schema version with a frozen fixture; a new step adds its own.
RELEASED = (1, 2, 4, 5)
#: The first customer's events each fixture holds beyond version 1's.
LATER_EVENTS: dict[int, tuple[tuple[str, Decimal], ...]] = {
    1: (),
    2: (("evt_v2_3", D("1.25")),),
    4: (("evt_v2_3", D("1.25")), ("evt_v4_4", D("0.75"))),
    5: (("evt_v2_3", D("1.25")), ("evt_v4_4", D("0.75"))),
}
#: The first customer's messages balance in each fixture.
MESSAGES_BALANCE = {1: D("23.47"), 2: D("23.47"), 4: D("22.72"), 5: D("20.22")}


class TestEveryReleasedSchema:
    @pytest.mark.parametrize("version", RELEASED)
    def test_opens_at_the_current_version_with_its_data_intact(
        self, tmp_path: Path, version: int
    ) -> None:
        """Given a database written by an older schema version (a frozen fixture), when the
        current store opens it, then it is at the current version with every record intact,
        and accepts writes."""
        # given
        path = tmp_path / f"v{version}.db"
        _restore(path, version)
        assert _user_version(path) == version
        # when
        store = SqliteStore(path)
        # then
        assert store.schema_version == schema.current_version()
        _assert_v1_data_intact(store, LATER_EVENTS[version], MESSAGES_BALANCE[version])
        with store.transaction() as tx:
            assert not tx.claim_gateway_event("gevt_v1")
        store.close()

    def test_version_4_rows_and_events_take_the_version_5_forms(self, tmp_path: Path) -> None:
        """Given the version-4 fixture (documents only), when the current store saves a new
        balance of one row alone and appends a plain event, then they go to the new columns
        (the row's document untouched), and a fresh store reads the row, its neighbours and
        every event exactly."""
        # given
        path = tmp_path / "v4.db"
        _restore(path, 4)
        store = SqliteStore(path)
        when = datetime(2025, 1, 5, 1, 2, 3, 456789, tzinfo=UTC)
        with store.transaction() as tx:
            before = tx.load_customer("pk_v1")
        assert before is not None
        after = attrs.evolve(
            before, rows=(attrs.evolve(before.rows[0], balance=D("21.720")), *before.rows[1:])
        )
        conn = sqlite3.connect(path)
        doc_before = conn.execute("SELECT data FROM balance_rows WHERE id = 'row_msgs'").fetchone()
        # when
        with store.transaction() as tx:
            tx.save_customer(CustomerChange.between(before, after))
            tx.append_events(
                [
                    EventRecord(
                        "evt_v5_5", "pk_v1", None, "messages", None, D("1.00"), {}, when, when
                    )
                ]
            )
        store.close()
        # then
        assert conn.execute(
            "SELECT data, balance FROM balance_rows WHERE id = 'row_msgs'"
        ).fetchone() == (doc_before[0], "21.720")
        assert conn.execute("SELECT data, value FROM events WHERE id = 'evt_v5_5'").fetchone() == (
            "",
            "1.00",
        )
        conn.close()
        fresh = SqliteStore(path)
        _assert_v1_data_intact(
            fresh, (*LATER_EVENTS[4], ("evt_v5_5", D("1.00"))), messages_balance=D("21.720")
        )
        with fresh.transaction(write=False) as tx:
            loaded = tx.load_customer("pk_v1")
            events = tx.list_events(
                "pk_v1", feature_id=None, start=None, end=None, limit=10, starting_after=None
            )
        assert loaded is not None and loaded.rows == after.rows
        assert str(loaded.rows[0].balance) == "21.720"
        assert events[-1] == EventRecord(
            "evt_v5_5", "pk_v1", None, "messages", None, D("1.00"), {}, when, when
        )
        fresh.close()

    def test_version_5_control_state_moves_to_its_column_on_its_next_change(
        self, tmp_path: Path
    ) -> None:
        """Given the version-5 fixture (an open lock and a usage window inside the packed head
        document), when the current store opens it, then it reads them exactly; when a save
        settles the lock (control state alone), then the new column holds the new control
        state, the head document is untouched, and a fresh store reads it exactly."""
        # given
        path = tmp_path / "v5.db"
        _restore(path, 5)
        store = SqliteStore(path)
        with store.transaction() as tx:
            before = tx.load_customer("pk_v1")
        assert before is not None
        cs = before.control_state
        assert [(lk.id, lk.held, lk.properties) for lk in cs.locks] == [
            ("job-v5", D("2.50"), {"job": "v5"})
        ]
        assert cs.locks[0].takes[0].row_id == "row_msgs"
        assert cs.locks[0].counted == (
            ("messages", None, datetime(2025, 1, 6, tzinfo=UTC), D("2.50")),
        )
        assert [(w.feature_id, w.used) for w in cs.windows] == [("messages", D("2.50"))]
        assert cs.lock_due == datetime(2025, 1, 7, tzinfo=UTC)
        conn = sqlite3.connect(path)
        head_doc = conn.execute("SELECT data FROM customers WHERE pk = 'pk_v1'").fetchone()
        settled = attrs.evolve(before, control_state=attrs.evolve(cs, locks=()))
        # when
        with store.transaction() as tx:
            tx.save_customer(CustomerChange.between(before, settled))
        store.close()
        # then
        controls, data = conn.execute(
            "SELECT controls, data FROM customers WHERE pk = 'pk_v1'"
        ).fetchone()
        conn.close()
        assert (data,) == head_doc
        assert json.loads(controls)["windows"][0]["used"] == "2.50"
        fresh = SqliteStore(path)
        _assert_v1_data_intact(fresh, LATER_EVENTS[5], MESSAGES_BALANCE[5])
        with fresh.transaction(write=False) as tx:
            loaded = tx.load_customer("pk_v1")
        fresh.close()
        assert loaded is not None and loaded.control_state == settled.control_state

    def test_version_2_events_keep_their_order_and_pages(self, tmp_path: Path) -> None:
        """Given the version-2 fixture, where another customer's event sits between the first
        customer's events, when it is opened and both customers track again, then each lists
        its events oldest first, pages after an event id, and finds no other customer's id."""
        # given
        path = tmp_path / "v2.db"
        _restore(path, 2)
        store = SqliteStore(path)
        when = datetime(2025, 1, 3, tzinfo=UTC)
        # when
        with store.transaction() as tx:
            tx.append_events(
                [
                    EventRecord(
                        "evt_v3_a", "pk_v1", None, "messages", None, D("3"), {}, when, when
                    ),
                    EventRecord("evt_v3_b", "pk_pre", None, None, None, D("4"), {}, when, when),
                ]
            )
        # then
        with store.transaction(write=False) as tx:

            def ids(pk: str, after: str | None = None) -> list[str]:
                events = tx.list_events(
                    pk, feature_id=None, start=None, end=None, limit=10, starting_after=after
                )
                return [e.id for e in events]

            assert ids("pk_v1") == ["evt_v1_1", "evt_v1_2", "evt_v2_3", "evt_v3_a"]
            assert ids("pk_pre") == ["evt_v2_pre", "evt_v3_b"]
            assert ids("pk_v1", after="evt_v1_2") == ["evt_v2_3", "evt_v3_a"]
            assert ids("pk_v1", after="evt_v2_pre") == []
            values = tx.list_events(
                "pk_v1", feature_id="messages", start=None, end=None, limit=10, starting_after=None
            )
            assert [e.value for e in values] == [D("0.1"), D("1.25"), D("3")]
        store.close()

    def test_version_3_events_have_no_rowid_and_no_index_of_their_own(self, tmp_path: Path) -> None:
        """Given a version-2 database, when the current store opens it, then events are keyed
        by (customer, sequence) without rowid and carry no other index (a track writes one
        b-tree for its event)."""
        path = tmp_path / "v2.db"
        _restore(path, 2)
        SqliteStore(path).close()
        conn = sqlite3.connect(path)
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0]
        indexes = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
        ).fetchall()
        conn.close()
        assert "WITHOUT ROWID" in sql
        assert "PRIMARY KEY (customer_pk, seq)" in sql
        assert [name for (name,) in indexes if not name.startswith("sqlite_autoindex")] == []
