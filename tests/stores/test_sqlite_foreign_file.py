"""Never touch what is not ours: a SQLite file that is not an autumn database is refused with
its bytes unchanged (not even switched to WAL), and the refusal names the file and the reason."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from autumn_core import StoreError
from autumn_sqlite import SqliteStore


def someone_elses_database(path: Path, *, journal: str = "DELETE") -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total TEXT)")
    conn.execute("INSERT INTO orders (total) VALUES ('12.50')")
    conn.commit()
    conn.close()


def test_a_file_with_someone_elses_tables_is_refused_byte_for_byte(tmp_path: Path) -> None:
    # given another application's SQLite file, in the default rollback-journal mode
    path = tmp_path / "shop.db"
    someone_elses_database(path)
    before = path.read_bytes()
    # when the store is asked to open it
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    # then it is refused, named, and left exactly as it was: no WAL switch, no side files
    assert info.value.message == (
        f"cannot use SQLite database {path}: it holds someone else's tables and no autumn"
        " schema; it was left untouched"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.db"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_a_sqlite_file_of_another_application_id_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.execute("PRAGMA user_version = 2")
    conn.execute("CREATE TABLE customers (x)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"it is not an autumn database \(application_id 1234\)"):
        SqliteStore(path)
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_database_is_named_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("shopping list: eggs, milk\n" * 40)
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert info.value.message == f"cannot use SQLite database {path}: it is not a SQLite database"
    assert path.read_bytes() == before


def test_an_unopenable_path_is_named(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "billing.db"
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert info.value.message.startswith(f"cannot use SQLite database {path}: cannot open the file")
    assert not path.parent.exists()


def test_our_own_file_is_still_opened_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "billing.db"
    SqliteStore(path).close()
    store = SqliteStore(path)
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
