"""SqliteStore behaviour beyond the shared contract: URLs, settings, schema, cache, errors."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from importlib.metadata import entry_points
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autumn_core
from autumn_core.catalog import Rollover
from autumn_core.changes import CustomerChange
from autumn_core.control_state import ControlState, LockState, LockTake, UsageWindow
from autumn_core.errors import InvalidRequest, StoreError, UniqueViolation
from autumn_core.model import (
    ZERO,
    CustomerState,
    EventRecord,
    PendingRecord,
    RolloverState,
    RowState,
)
from autumn_core.testing.contract.builders import D, customer, event, rich_customer, row
from autumn_sqldoc import codec as sqldoc
from autumn_sqlite import SqliteStore, codec, path_from_url, store_from_url
from autumn_sqlite.packing import unpack
from autumn_sqlite.store import translate
from tests.stores import _process_workers as workers


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "s.db")
    yield s
    s.close()


def _raw(store: SqliteStore) -> sqlite3.Connection:
    """A separate plain connection to the store's file (another process's view)."""
    return sqlite3.connect(store.path, isolation_level=None)


class TestUrls:
    def test_url_forms(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Given the three URL forms, then each names the expected path."""
        assert path_from_url("sqlite:///billing.db") == "billing.db"
        assert path_from_url("sqlite:////var/lib/billing.db") == "/var/lib/billing.db"
        assert path_from_url("sqlite://:memory:") == ":memory:"
        assert path_from_url("sqlite:///:memory:") == ":memory:"

    def test_relative_url_opens_in_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Given a working directory, when sqlite:///rel.db is opened, the file is made there."""
        monkeypatch.chdir(tmp_path)
        store = store_from_url("sqlite:///rel.db", synchronous="FULL")
        store.close()
        assert (tmp_path / "rel.db").exists()

    def test_absolute_and_memory_urls_open(self, tmp_path: Path) -> None:
        """Given an absolute URL and the memory URL, when opened, then they are usable, and the
        memory store says it is neither durable nor multi-process."""
        absolute = store_from_url(f"sqlite:///{tmp_path}/abs.db")
        assert absolute.capabilities.durable and absolute.capabilities.multi_process
        absolute.close()
        assert (tmp_path / "abs.db").exists()
        memory = store_from_url("sqlite://:memory:")
        assert not memory.capabilities.durable and not memory.capabilities.multi_process
        with memory.transaction() as tx:
            tx.insert_customer(customer("m1"))
        with memory.transaction(write=False) as tx:
            assert tx.customer_pk("m1") is not None
        memory.close()

    @pytest.mark.parametrize(
        "url",
        ["sqlite://", "sqlite:///", "sqlite://host/x.db", "postgres:///x", "sqlite:///x.db?a=1"],
    )
    def test_malformed_urls_are_refused(self, url: str) -> None:
        """Given a malformed or foreign URL, when opened, then InvalidRequest is raised."""
        with pytest.raises(InvalidRequest):
            store_from_url(url)

    def test_unknown_options_are_refused(self, tmp_path: Path) -> None:
        """Given an unknown keyword, when a store is opened by URL, then InvalidRequest."""
        with pytest.raises(InvalidRequest, match="colour"):
            store_from_url(f"sqlite:///{tmp_path}/x.db", colour="red")

    def test_autumn_open_uses_the_sqlite_store(self, tmp_path: Path) -> None:
        """Given a sqlite URL, when ``autumn_core.open`` builds an engine on it twice, then the
        store is a SqliteStore and the second engine sees what the first wrote."""
        url = f"sqlite:///{tmp_path}/open.db"
        with autumn_core.open(url, catalog=workers.catalog(100), synchronous="FULL") as billing:
            billing.customers.create("opened", email="o@x.io")
        with autumn_core.open(url, catalog=workers.catalog(100)) as billing:
            assert billing.customers.get("opened").email == "o@x.io"
        assert (tmp_path / "open.db").exists()

    def test_entry_point_is_registered(self) -> None:
        """The ``autumn_core.stores`` entry point ``sqlite`` is ``store_from_url``."""
        (ep,) = [e for e in entry_points(group="autumn_core.stores") if e.name == "sqlite"]
        assert ep.load() is store_from_url


class TestSettings:
    @pytest.mark.parametrize(("mode", "level"), [("NORMAL", 1), ("full", 2), ("OFF", 0)])
    def test_connection_pragmas(self, tmp_path: Path, mode: str, level: int) -> None:
        """Given a synchronous mode, when a store opens, then its connection uses WAL, foreign
        keys and that synchronous level."""
        store = SqliteStore(tmp_path / "p.db", synchronous=mode)
        conn = store._connection()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
        store.close()

    @pytest.mark.parametrize("kwargs", [{"synchronous": "SOMETIMES"}, {"lock_timeout": 0}])
    def test_bad_settings_are_refused(self, tmp_path: Path, kwargs: dict[str, object]) -> None:
        """Given a bad setting, when a store is made, then InvalidRequest names it."""
        with pytest.raises(InvalidRequest):
            SqliteStore(tmp_path / "x.db", **kwargs)  # type: ignore[arg-type]

    def test_unopenable_path_is_a_store_error(self, tmp_path: Path) -> None:
        """Given a path in a missing directory, when a store opens it, then StoreError."""
        with pytest.raises(StoreError, match="cannot open"):
            SqliteStore(tmp_path / "missing" / "x.db")


class TestSchema:
    def test_no_column_holds_floating_point(self, store: SqliteStore) -> None:
        """Money and quantities are never stored as REAL: no column is declared REAL, FLOAT,
        DOUBLE or NUMERIC."""
        conn = store._connection()
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            for col in conn.execute(f"PRAGMA table_info({table})"):
                assert col[2].upper() in ("TEXT", "INTEGER"), (table, col[1], col[2])

    def test_decimals_are_stored_as_exact_text(self, store: SqliteStore) -> None:
        """Given a row balance of 23.47, then the stored JSON holds the string "23.47"."""
        s = customer(rows=(row("r_text", balance="23.47"),))
        with store.transaction() as tx:
            tx.insert_customer(s)
        conn = _raw(store)
        (data,) = conn.execute("SELECT data FROM balance_rows WHERE id = 'r_text'").fetchone()
        conn.close()
        assert '"balance":"23.47"' in unpack(data)

    def test_uniqueness_is_enforced_by_the_schema(self, store: SqliteStore) -> None:
        """Given rows written behind the store's back, the schema itself refuses duplicates of
        an id, an id-less email, a fingerprint claim and a gateway event."""
        conn = _raw(store)
        ins = "INSERT INTO customers (pk, id, email_lower, created_us, version, data)"
        conn.execute(f"{ins} VALUES ('p1', 'x', 'a@b.c', 0, 1, '{{}}')")
        conn.execute(f"{ins} VALUES ('p2', NULL, 'e@f.g', 0, 1, '{{}}')")
        statements = [
            f"{ins} VALUES ('p3', 'x', NULL, 0, 1, '{{}}')",
            f"{ins} VALUES ('p4', NULL, 'e@f.g', 0, 1, '{{}}')",
            "INSERT INTO trial_fingerprint_claims VALUES ('pro', 'fp'), ('pro', 'fp')",
            "INSERT INTO trial_subject_claims VALUES ('pro', 'p1', ''), ('pro', 'p1', '')",
            "INSERT INTO gateway_events VALUES ('e1'), ('e1')",
            "INSERT INTO renewal_markers VALUES ('cp', 1), ('cp', 1)",
            "INSERT INTO idempotency VALUES ('t', 'p1', 'k', 0, '{}'), ('t', 'p1', 'k', 0, '{}')",
        ]
        for sql in statements:
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(sql)
        conn.close()


class TestErrors:
    def test_translation(self) -> None:
        """Driver exceptions become UniqueViolation or StoreError (busy ones retryable)."""
        unique = translate(sqlite3.IntegrityError("UNIQUE constraint failed: customers.id"))
        assert type(unique) is UniqueViolation
        fk = translate(sqlite3.IntegrityError("FOREIGN KEY constraint failed"))
        assert type(fk) is StoreError
        busy = translate(sqlite3.OperationalError("database is locked"))
        assert type(busy) is StoreError and getattr(busy, "retryable", False)
        other = translate(sqlite3.DatabaseError("file is not a database"))
        assert type(other) is StoreError and not getattr(other, "retryable", False)

    def test_corrupt_row_reads_as_store_error(self, tmp_path: Path) -> None:
        """Given a customer row damaged behind the store's back, when it is loaded, then
        StoreError is raised (never a JSON or cattrs exception)."""
        store = SqliteStore(tmp_path / "c.db", cache_size=0)
        s = customer(rows=(row("r"),))
        with store.transaction() as tx:
            tx.insert_customer(s)
        conn = _raw(store)
        conn.execute("UPDATE balance_rows SET data = '{\"id\": 1' WHERE customer_pk = ?", (s.pk,))
        conn.close()
        with pytest.raises(StoreError), store.transaction(write=False) as tx:
            tx.load_customer(s.pk)
        store.close()

    def test_naive_datetimes_are_refused(self, store: SqliteStore) -> None:
        """Given a customer created at a naive datetime, when inserted, then StoreError is
        raised and nothing is stored."""
        naive = customer("naive", created_at=datetime(2025, 1, 1))
        with pytest.raises(StoreError, match="naive"), store.transaction() as tx:
            tx.insert_customer(naive)
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("naive") is None

    def test_a_save_refused_while_encoding_writes_nothing(self, store: SqliteStore) -> None:
        """Given a stored customer, when a save changing one row and adding a row with a naive
        datetime is refused inside a transaction that then carries on and commits, then the
        customer is exactly as before (the changed row was not written either)."""
        s = customer(rows=(row("r1", balance=5),))
        with store.transaction() as tx:
            tx.insert_customer(s)
        with store.transaction(write=False) as tx:
            before = tx.load_customer(s.pk)
        assert before is not None
        bad = attrs.evolve(
            before,
            rows=(
                attrs.evolve(before.rows[0], balance=D(0)),
                row("r2", created_at=datetime(2025, 1, 1)),
            ),
        )
        with store.transaction() as tx:
            with pytest.raises(StoreError, match="naive"):
                tx.save_customer(CustomerChange.between(before, bad))
            with pytest.raises(StoreError, match="naive"):
                tx.insert_customer(customer("bad_child", rows=bad.rows))
        uncached = SqliteStore(store.path, cache_size=0)
        with uncached.transaction(write=False) as tx:
            assert tx.load_customer(s.pk) == before
            assert tx.customer_pk("bad_child") is None
        uncached.close()

    def test_nested_transaction_on_one_thread_is_refused(self, store: SqliteStore) -> None:
        """Given an open transaction, when the same thread opens another, then StoreError is
        raised at once (it would wait on itself), and the outer one still commits."""
        with store.transaction() as outer:
            with pytest.raises(StoreError, match="already open"), store.transaction():
                pass
            outer.insert_customer(customer("outer"))
        with store.transaction(write=False) as tx:
            assert tx.customer_pk("outer") is not None

    def test_use_after_the_transaction_ended_is_refused(self, store: SqliteStore) -> None:
        """Given a finished write transaction object, when it is written to, StoreError."""
        with store.transaction() as tx:
            pass
        with pytest.raises(StoreError):
            tx.insert_customer(customer())


T_EVENT = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


def _fresh_load(store: SqliteStore, pk: str) -> CustomerState:
    """The customer as another process reads it: a new store on the file, nothing cached."""
    other = SqliteStore(store.path)
    try:
        with other.transaction(write=False) as tx:
            state = tx.load_customer(pk)
    finally:
        other.close()
    assert state is not None
    return state


class TestWrites:
    def _statements(self, store: SqliteStore) -> list[str]:
        seen: list[str] = []
        store._connection().set_trace_callback(seen.append)
        if store._group is not None:  # writes run on the group-commit writer connection
            store._group.connection.set_trace_callback(seen.append)
        return seen

    def test_a_track_like_save_writes_one_row_and_the_version(self, store: SqliteStore) -> None:
        """Given a rich customer, when one balance row's balance changes with no event (as in
        a balance update), then the save is exactly two writes: that row's balance and the
        customer's version bump (before COMMIT)."""
        # given
        s = rich_customer()
        with store.transaction() as tx:
            tx.insert_customer(s)
        with store.transaction(write=False) as tx:
            before = tx.load_customer(s.pk)
        assert before is not None
        after = attrs.evolve(
            before,
            rows=(attrs.evolve(before.rows[0], balance=D("22.47")), *before.rows[1:]),
        )
        seen = self._statements(store)
        # when
        with store.transaction() as tx:
            tx.save_customer(CustomerChange.between(before, after))
        # then
        writes = [s.split()[0:4] for s in seen if s.split()[0] in ("UPDATE", "INSERT", "DELETE")]
        assert writes == [
            ["UPDATE", "balance_rows", "SET", "balance"],
            ["UPDATE", "customers", "SET", "version"],
        ]
        assert _fresh_load(store, s.pk).rows == after.rows

    def test_a_track_writes_its_row_and_event_and_other_stores_see_it(
        self, store: SqliteStore
    ) -> None:
        """Given a customer another store (another process) has parsed and cached, when a
        transaction saves one row's new balance and appends the customer's event (a track),
        then it writes exactly the row and the event (the event moves the version: no
        customer row update), and the other store reads the new state, twice in a row (the
        second time from its cache), and its version is larger."""
        # given
        s = rich_customer()
        with store.transaction() as tx:
            tx.insert_customer(s)
        other = SqliteStore(store.path)
        with other.transaction(write=False) as tx:
            cached = tx.load_customer(s.pk)
        assert cached is not None
        with store.transaction(write=False) as tx:
            before = tx.load_customer(s.pk)
        assert before is not None
        after = attrs.evolve(
            before, rows=(attrs.evolve(before.rows[0], balance=D("22.47")), *before.rows[1:])
        )
        seen = self._statements(store)
        # when
        with store.transaction() as tx:
            tx.save_customer(CustomerChange.between(before, after))
            tx.append_events([event(s.pk, value="1")])
        # then
        writes = [s.split()[0:2] for s in seen if s.split()[0] in ("UPDATE", "INSERT", "DELETE")]
        assert writes == [["UPDATE", "balance_rows"], ["INSERT", "INTO"]]
        for _ in range(2):
            with other.transaction(write=False) as tx:
                seen_by_other = tx.load_customer(s.pk)
            assert seen_by_other is not None
            assert seen_by_other.rows == after.rows
            assert seen_by_other.version > cached.version
        with store.transaction(write=False) as tx:
            mine = tx.load_customer(s.pk)
        assert mine is not None and mine.version == seen_by_other.version
        other.close()

    def test_balance_writes_then_a_whole_row_write_load_exactly(self, store: SqliteStore) -> None:
        """Given a row whose balance alone was saved twice (the balance column: 22.470 keeps
        its exponent), when a later save changes another field of it too, then a fresh
        store (no parse cache) reads every version exactly, the last with the new balance."""
        # given
        s = rich_customer()
        with store.transaction() as tx:
            tx.insert_customer(s)
        states = [s]
        for balance in ("22.470", "21"):
            prev = states[-1]
            nxt = attrs.evolve(
                prev, rows=(attrs.evolve(prev.rows[0], balance=D(balance)), *prev.rows[1:])
            )
            with store.transaction() as tx:
                tx.save_customer(CustomerChange.since(prev, nxt, len(states)))
            states.append(nxt)
            loaded = _fresh_load(store, s.pk)
            assert loaded.rows == nxt.rows
            assert str(loaded.rows[0].balance) == balance
        # when
        prev = states[-1]
        last = attrs.evolve(
            prev,
            rows=(attrs.evolve(prev.rows[0], balance=D("20"), granted=D("99")), *prev.rows[1:]),
        )
        with store.transaction() as tx:
            tx.save_customer(CustomerChange.since(prev, last, len(states)))
        # then
        loaded = _fresh_load(store, s.pk)
        assert (loaded.rows[0].balance, loaded.rows[0].granted) == (D("20"), D("99"))
        assert loaded.rows == last.rows

    def test_a_lock_writes_the_control_state_column_alone(self, store: SqliteStore) -> None:
        """Given a rich customer, when a save opens a lock (its hold taken from one row) and
        a later one settles it, then each writes the control state's column, the row's
        balance and nothing of the packed head document, and a fresh store (no parse cache)
        reads every state exactly; a later save of another head field rewrites the head
        document with the control state in it and clears the column."""
        # given
        s = rich_customer()
        with store.transaction() as tx:
            tx.insert_customer(s)
        conn = _raw(store)
        head_doc = conn.execute("SELECT data FROM customers WHERE pk = ?", (s.pk,)).fetchone()
        when = datetime(2025, 1, 6, tzinfo=UTC)
        lock = LockState(
            id="job-1",
            feature_id=s.rows[0].feature_id,
            entity_id=None,
            requested=D("2.5"),
            held=D("2.50"),
            takes=(LockTake(s.rows[0].id, s.rows[0].feature_id, D("2.50")),),
            created_at=when,
            expires_at=when + timedelta(hours=1),
            properties={"job": 1},
            counted=((s.rows[0].feature_id, None, when, D("2.50")),),
        )
        held = attrs.evolve(
            s,
            rows=(attrs.evolve(s.rows[0], balance=s.rows[0].balance - D("2.50")), *s.rows[1:]),
            control_state=s.control_state.opened(lock),
        )
        settled = attrs.evolve(
            held,
            rows=s.rows,
            control_state=attrs.evolve(held.control_state, locks=()),
        )
        seen = self._statements(store)
        for version, (prev, nxt) in enumerate(((s, held), (held, settled)), start=1):
            seen.clear()
            # when
            with store.transaction() as tx:
                tx.save_customer(CustomerChange.since(prev, nxt, version))
            # then
            writes = [w.split()[0:4] for w in seen if w.split()[0] in ("UPDATE", "INSERT")]
            assert writes == [
                ["UPDATE", "customers", "SET", "controls"],
                ["UPDATE", "balance_rows", "SET", "balance"],
            ]
            assert (
                conn.execute("SELECT data FROM customers WHERE pk = ?", (s.pk,)).fetchone()
                == head_doc
            )
            loaded = _fresh_load(store, s.pk)
            assert loaded.control_state == nxt.control_state
            assert loaded.rows == nxt.rows
        # when
        renamed = attrs.evolve(settled, name="Renamed Ltd")
        with store.transaction() as tx:
            tx.save_customer(CustomerChange.since(settled, renamed, 3))
        # then
        controls, data = conn.execute(
            "SELECT controls, data FROM customers WHERE pk = ?", (s.pk,)
        ).fetchone()
        conn.close()
        assert controls is None
        assert codec.load(unpack(data))["control_state"]["lock_due"] == "2025-01-06T01:00:00Z"
        loaded = _fresh_load(store, s.pk)
        assert (loaded.name, loaded.control_state) == ("Renamed Ltd", settled.control_state)

    def test_a_pending_record_read_with_its_customer_saves_the_customer_query(
        self, store: SqliteStore
    ) -> None:
        """Given a pending record of a customer this store has cached, when a write
        transaction reads the record with its customer, then loading the customer next runs
        no statement; and after another store (another process) saved the customer, the same
        read loads the new state, not the cached one."""
        # given
        s = rich_customer()
        record = PendingRecord("lock:job-1", s.pk, "lock", {"status": "held"}, s.created_at)
        with store.transaction() as tx:
            tx.insert_customer(s)
            tx.put_pending(record)
        with store.transaction(write=False) as tx:
            cached = tx.load_customer(s.pk)
        assert cached is not None
        seen = self._statements(store)
        # when
        with store.transaction() as tx:
            assert tx.get_pending_locking_customer("lock:job-1") == record
            seen.clear()
            assert tx.load_customer(s.pk, for_update=True) == cached
            # then
            assert seen == []
        # given
        other = SqliteStore(store.path)
        renamed = attrs.evolve(cached, name="Renamed Ltd")
        with other.transaction() as tx:
            tx.save_customer(CustomerChange.between(cached, renamed))
        other.close()
        # when
        with store.transaction() as tx:
            assert tx.get_pending_locking_customer("lock:job-1") == record
            loaded = tx.load_customer(s.pk, for_update=True)
            assert tx.get_pending_locking_customer("lock:unknown") is None
        # then
        assert loaded is not None and loaded.name == "Renamed Ltd"

    def test_plain_and_rich_events_are_read_back_exactly(self, store: SqliteStore) -> None:
        """Given a plain track's event (value, feature, one time: columns only, no document)
        and events with an entity, a name, properties or a later creation time, when they are
        listed, then each is the record that was appended."""
        s = customer()
        later = T_EVENT + timedelta(seconds=3)
        appended = [
            event(s.pk, value="0.50", timestamp=T_EVENT),
            event(s.pk, value="-2", timestamp=T_EVENT, entity_id="seat-1"),
            event(s.pk, feature_id=None, event_name="chat", properties={"n": 1}),
            attrs.evolve(event(s.pk, value="3", timestamp=T_EVENT), created_at=later),
        ]
        with store.transaction() as tx:
            tx.insert_customer(s)
            tx.append_events(appended[:1])
            tx.append_events(appended[1:])
        with store.transaction(write=False) as tx:
            listed = tx.list_events(
                s.pk, feature_id=None, start=None, end=None, limit=10, starting_after=None
            )
        assert listed == appended
        assert str(listed[0].value) == "0.50"
        conn = _raw(store)
        docs = [r[0] for r in conn.execute("SELECT data FROM events ORDER BY seq")]
        conn.close()
        assert docs[0] == "" and all(docs[1:])

    def test_unchanged_customer_is_served_from_the_cache(self, store: SqliteStore) -> None:
        """Given a loaded customer, when it is loaded again unchanged, then the same object is
        returned after one small query; after a save, the new state is returned."""
        s = rich_customer()
        with store.transaction() as tx:
            tx.insert_customer(s)
        with store.transaction(write=False) as tx:
            first = tx.load_customer(s.pk)
        seen = self._statements(store)
        with store.transaction(write=False) as tx:
            second = tx.load_customer(s.pk)
        assert second is first
        assert [q for q in seen if q.startswith("SELECT")] == [
            "SELECT seq, version, coalesce((SELECT max(e.seq) FROM events AS e"
            " WHERE e.customer_pk = customers.pk), 0) FROM customers WHERE pk = " + repr(s.pk)
        ]
        assert first is not None
        changed = attrs.evolve(first, name="changed")
        with store.transaction() as tx:
            tx.save_customer(CustomerChange.between(first, changed))
        with store.transaction(write=False) as tx:
            third = tx.load_customer(s.pk)
        assert third is not None and third.name == "changed"

    def test_a_read_transaction_is_one_snapshot(self, store: SqliteStore) -> None:
        """Given a read transaction that has read a customer and its events, when another
        thread commits a change, then the read transaction still sees the old state."""
        # given
        s = customer(rows=(row("r", balance=10),))
        with store.transaction() as tx:
            tx.insert_customer(s)
            tx.append_events([event(s.pk)])

        def change() -> None:
            with store.transaction() as tx:
                before = tx.load_customer(s.pk, for_update=True)
                assert before is not None
                tx.save_customer(
                    CustomerChange.between(
                        before,
                        attrs.evolve(before, rows=(attrs.evolve(before.rows[0], balance=D(3)),)),
                    )
                )
                tx.append_events([event(s.pk)])

        with store.transaction(write=False) as tx:
            old = tx.load_customer(s.pk)
            # when
            writer = threading.Thread(target=change)
            writer.start()
            writer.join()
            # then
            again = tx.load_customer(s.pk)
            n_events = len(
                tx.list_events(
                    s.pk, feature_id=None, start=None, end=None, limit=10, starting_after=None
                )
            )
        assert old is not None and again is not None
        assert again.rows[0].balance == old.rows[0].balance == 10
        assert n_events == 1
        with store.transaction(write=False) as tx:
            now = tx.load_customer(s.pk)
        assert now is not None and now.rows[0].balance == 3

    def test_a_reused_pk_is_not_served_from_the_cache(self, store: SqliteStore) -> None:
        """Given a customer cached at version 1 and then deleted by another store object, when
        a different customer is inserted there with the same pk (version 1 again), then the
        first store loads the new one, not its cached copy."""
        s = customer("first", pk="pk_reused", name="first")
        with store.transaction() as tx:
            tx.insert_customer(s)
        with store.transaction(write=False) as tx:
            assert tx.load_customer("pk_reused") is not None
        other = SqliteStore(store.path)
        with other.transaction() as tx:
            tx.delete_customer("pk_reused")
            tx.insert_customer(customer("second", pk="pk_reused", name="second"))
        other.close()
        with store.transaction(write=False) as tx:
            loaded = tx.load_customer("pk_reused")
        assert loaded is not None and loaded.name == "second"


def _write_in_child(path: str) -> None:
    store = _PARENT_STORE
    assert store is not None
    with store.transaction() as tx:
        tx.insert_customer(customer("from_child"))
    os._exit(0)


_PARENT_STORE: SqliteStore | None = None


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_uses_its_own_connection(store: SqliteStore) -> None:
    """Given a store used in the parent, when a forked child writes through the same store
    object, then it opens its own connection and the parent sees the write."""
    global _PARENT_STORE
    with store.transaction() as tx:
        tx.insert_customer(customer("from_parent"))
    _PARENT_STORE = store
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_write_in_child, args=(store.path,))
    child.start()
    child.join(30)
    _PARENT_STORE = None
    assert child.exitcode == 0
    with store.transaction(write=False) as tx:
        assert tx.customer_pk("from_child") is not None
        assert tx.customer_pk("from_parent") is not None


def test_codec_micros_round_trip() -> None:
    """Indexed time columns hold exact microseconds since the epoch."""
    t = datetime.fromisoformat("2031-05-06T07:08:09.123456+00:00")
    assert codec.from_micros(codec.to_micros(t)) == t
    assert codec.to_micros(datetime.fromisoformat("1970-01-01T00:00:00.000001+00:00")) == 1


def _write_in_child_while_parent_writes() -> None:
    store = _PARENT_STORE
    assert store is not None
    try:
        with store.transaction() as tx:
            tx.insert_customer(customer("child_after_parent"))
    except StoreError:
        os._exit(3)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_fork_during_a_write_fails_cleanly_in_the_child(tmp_path: Path) -> None:
    """Given a parent thread inside a write transaction, when the process forks and the child
    writes through the same store object, then the child gets StoreError within the lock bound
    (SQLite's per-process lock bookkeeping is copied by fork, so such a child can never take
    the write lock; what matters is that it neither hangs on a copy of the parent's in-process
    lock nor corrupts anything), and the parent's write commits."""
    global _PARENT_STORE
    store = SqliteStore(tmp_path / "f.db", lock_timeout=0.5)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.transaction() as tx:
            tx.insert_customer(customer("parent_holding"))
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(10)
    _PARENT_STORE = store
    child = multiprocessing.get_context("fork").Process(target=_write_in_child_while_parent_writes)
    child.start()
    threading.Timer(0.1, release.set).start()
    child.join(20)
    holder.join()
    _PARENT_STORE = None
    assert child.exitcode == 3
    with store.transaction(write=False) as tx:
        assert tx.customer_pk("child_after_parent") is None
        assert tx.customer_pk("parent_holding") is not None
    conn = _raw(store)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    store.close()


# Engine times are UTC; a fixed offset checks the conversion (zones with DST folds compare
# unequal across zones by Python's rules, whichever encoder wrote them).
_aware = st.datetimes(
    min_value=datetime(2000, 1, 2),
    max_value=datetime(2099, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
_maybe_text = st.none() | st.text(max_size=8)
_properties = st.dictionaries(
    st.text(max_size=5),
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.decimals(allow_nan=False),
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        EventRecord,
        id=st.text(min_size=1, max_size=8),
        customer_pk=st.text(min_size=1, max_size=8),
        entity_id=_maybe_text,
        feature_id=_maybe_text,
        event_name=_maybe_text,
        value=st.decimals(allow_nan=False, allow_infinity=False, places=4),
        properties=_properties,
        timestamp=_aware,
        created_at=_aware,
    )
)
def test_the_written_out_event_encoder_matches_the_generic_one(event: EventRecord) -> None:
    """Given any event, then the hot-path encoder writes exactly the text the converter writes
    (a field added to EventRecord and not to ``encode_event`` fails here)."""
    assert codec.encode_event(event) == codec.encode(event)


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        PendingRecord,
        key=st.text(min_size=1, max_size=8),
        customer_pk=st.text(min_size=1, max_size=8),
        kind=st.text(min_size=1, max_size=8),
        payload=_properties,
        created_at=_aware,
    )
)
def test_the_written_out_pending_codec_matches_the_generic_one(record: PendingRecord) -> None:
    """Given any pending record, then the hot-path encoder writes exactly the text the
    converter writes, and the hot-path decoder reads it back as the converter does (a field
    added to PendingRecord and not to ``encode_pending`` fails here)."""
    text = codec.encode_pending(record)
    assert text == codec.encode(record)
    assert codec.decode_pending(text) == codec.decode(text, PendingRecord)


_controls_decimal = st.decimals(allow_nan=False, allow_infinity=False, places=3)
_lock_take = st.builds(
    LockTake,
    row_id=st.text(min_size=1, max_size=5),
    feature_id=st.text(min_size=1, max_size=5),
    amount=_controls_decimal,
    rollovers=st.lists(st.tuples(st.text(max_size=4), _controls_decimal), max_size=2).map(tuple),
    period=st.none() | _aware,
)
_lock_state = st.builds(
    LockState,
    id=st.text(min_size=1, max_size=5),
    feature_id=st.text(min_size=1, max_size=5),
    entity_id=_maybe_text,
    requested=_controls_decimal,
    held=_controls_decimal,
    takes=st.lists(_lock_take, max_size=2).map(tuple),
    created_at=_aware,
    expires_at=_aware,
    overage=st.sampled_from(["reject", "cap", "overflow"]),
    # JSON values, as ``check_metadata`` lets through
    properties=st.dictionaries(
        st.text(max_size=5), st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    ),
    counted=st.lists(
        st.tuples(st.text(max_size=4), _maybe_text, _aware, _controls_decimal), max_size=2
    ).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        ControlState,
        locks=st.lists(_lock_state, max_size=2).map(tuple),
        windows=st.lists(
            st.builds(
                UsageWindow,
                feature_id=st.text(max_size=4),
                entity_id=_maybe_text,
                start=_aware,
                end=_aware,
                used=_controls_decimal,
            ),
            max_size=2,
        ).map(tuple),
        lock_due=st.none() | _aware,
    )
)
def test_the_written_out_control_state_encoder_matches_the_generic_one(cs: ControlState) -> None:
    """Given any control state, then the hot-path encoder gives exactly the converter's compact
    form (a field added to a control-state record and not to ``controls_doc`` fails here), and
    it reads back as the same control state."""
    doc = sqldoc.controls_doc(cs)
    assert sqldoc.dump(doc) == sqldoc.dump(sqldoc.compact(cs))
    assert sqldoc.structure(sqldoc.load(sqldoc.dump(doc)), ControlState) == cs
    # The text the stores write, with each lock's part made once and kept: the same text, the
    # first time and again.
    assert sqldoc.controls_text(cs) == sqldoc.dump(doc)
    assert sqldoc.controls_text(cs) == sqldoc.dump(doc)


_decimal = st.decimals(
    allow_nan=False, allow_infinity=False, places=3, min_value=-(10**15), max_value=10**15
) | st.sampled_from([D("0"), D("0.00"), D("-0"), D("1E+15"), ZERO])
_maybe_time = st.none() | _aware


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        RowState,
        id=st.text(min_size=1, max_size=8),
        feature_id=st.text(min_size=1, max_size=8),
        created_at=_aware,
        granted=_decimal,
        balance=_decimal,
        cp_id=_maybe_text,
        item_index=st.none() | st.integers(0, 5),
        entity_id=_maybe_text,
        per_entity=st.booleans(),
        unlimited=st.booleans(),
        unlimited_usage=_decimal,
        billing=st.sampled_from([None, "usage", "prepaid"]),
        max_purchase=st.none() | _decimal,
        reset=st.sampled_from([None, "day", "month"]),
        reset_count=st.integers(1, 3),
        anchor=_maybe_time,
        next_reset_at=_maybe_time,
        expires_at=_maybe_time,
        rollover=st.none()
        | st.builds(
            Rollover, max=st.none() | _decimal, expires_after_months=st.none() | st.integers(1, 3)
        ),
        rollovers=st.lists(
            st.builds(RolloverState, st.text(max_size=4), _decimal, _decimal, _maybe_time, _aware),
            max_size=2,
        ).map(tuple),
        paid_seats=_decimal,
        included=_decimal,
    )
)
def test_the_row_encoder_round_trips_exactly_like_the_generic_one(balance_row: RowState) -> None:
    """Given any balance row (defaults, zeros with exponents, nested rollovers), when written by
    the hot-path encoder (defaults left out) and read back, then it is the same row, and every
    Decimal keeps its exact text (what the generic encoder would have written)."""
    assert balance_row.public.id == balance_row.id  # derived, now in its __dict__
    text = codec.encode_record(balance_row)

    back = codec.decode(text, RowState)

    assert back == balance_row
    assert codec.encode(back) == codec.encode(balance_row)
    assert "public" not in codec.load(text)
