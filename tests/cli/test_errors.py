"""One line per error, always, naming the file, URL (without password) or value at fault."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import REPO, Run, one_error_line


@pytest.fixture
def pushed(autumn: Run) -> None:
    assert autumn("catalog", "push", str(REPO / "autumn.toml")).returncode == 0


def test_a_read_command_on_a_missing_database_says_so_and_creates_nothing(
    autumn: Run, tmp_path: Path
) -> None:
    for args in (
        ["customers", "list"],
        ["customers", "show", "ann"],
        ["check", "ann", "messages"],
        ["catalog", "show"],
    ):
        line = one_error_line(autumn(*args))
        assert line == (
            "error: no_database: no database at autumn.db (sqlite:///autumn.db); create one with"
            " `autumn catalog push autumn.toml` or `autumn demo`, or pass --db / set AUTUMN_DB"
        )
    assert list(tmp_path.iterdir()) == []


def test_a_catalog_that_is_not_utf8_is_one_line_naming_the_file(
    autumn: Run, tmp_path: Path
) -> None:
    (tmp_path / "latin1.toml").write_bytes(b'[[features]]\nid = "m"\nname = "caf\xe9"\n')
    line = one_error_line(autumn("catalog", "push", "latin1.toml"))
    assert line == (
        "error: invalid_catalog: catalog latin1.toml is not UTF-8 text (byte 0xe9 at offset 33);"
        " save it as UTF-8"
    )
    line = one_error_line(autumn("--catalog", "latin1.toml", "check", "a", "m"))
    assert "catalog latin1.toml is not UTF-8 text" in line


def test_a_malformed_catalog_names_product_item_and_key(autumn: Run, tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        '[[features]]\nid = "m"\n[[products]]\nid = "p"\n[[products.items]]\nincluded = 3\n'
    )
    line = one_error_line(autumn("catalog", "push", "bad.toml"))
    assert (
        line
        == "error: invalid_catalog: catalog bad.toml: product 'p', item #1: feature_id is missing"
    )


def test_a_bad_quantity_names_the_value(autumn: Run, pushed: None) -> None:
    line = one_error_line(
        autumn("attach", "ann", "top_up", "--create", "--quantity", "messages=abc")
    )
    assert line == "error: invalid_request: --quantity of 'messages' must be numeric, got 'abc'"
    line = one_error_line(autumn("attach", "ann", "top_up", "--create", "--quantity", "500"))
    assert line == "error: invalid_request: --quantity must look like FEATURE=UNITS, got '500'"


def test_postgresql_without_the_driver_says_what_to_install(autumn: Run, tmp_path: Path) -> None:
    # given an environment where psycopg cannot be imported
    shim = tmp_path / "shim" / "psycopg"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    result = autumn(
        "--db",
        "postgresql://ann:s3cret@db.example/billing",
        "customers",
        "list",
        env={"PYTHONPATH": str(tmp_path / "shim")},
    )
    line = one_error_line(result)
    assert line == (
        "error: missing_dependency: postgresql://ann:***@db.example/billing needs the PostgreSQL"
        " driver (psycopg is not installed): pip install 'autumn-embedded[postgres]'"
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_postgresql_is_one_line_without_the_password(autumn: Run) -> None:
    url = f"postgresql://ann:s3cret@127.0.0.1:{_closed_port()}/billing"
    line = one_error_line(autumn("--db", url, "--timeout", "1", "customers", "list"))
    assert line.startswith("error: store_error: ")
    assert url.replace("s3cret", "***") in line
    assert "s3cret" not in line


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A database file nobody may write: immutable for root (who ignores permissions)."""
    db = tmp_path / "autumn.db"
    yield db
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(db)], check=False)
    else:
        db.chmod(0o644)


def test_a_read_only_database_is_named_with_the_reason(
    autumn: Run, pushed: None, read_only: Path
) -> None:
    assert autumn("track", "ann", "messages", "--create").returncode == 0
    if os.geteuid() == 0:
        assert shutil.which("chattr"), "chattr (e2fsprogs) makes a file read-only for root"
        made = subprocess.run(["chattr", "+i", str(read_only)], capture_output=True, text=True)
        assert made.returncode == 0, f"chattr +i needs a filesystem that supports it: {made.stderr}"
    else:
        read_only.chmod(0o444)
    # reading still works
    assert autumn("customers", "show", "ann").returncode == 0
    line = one_error_line(autumn("track", "ann", "messages"))
    assert line.startswith("error: store_error: sqlite:///autumn.db: ")
    assert "the database is read-only: check the permissions of the file and its directory" in line


def test_a_file_that_is_not_a_database_is_named(autumn: Run, tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("eggs, milk\n" * 50)
    before = (tmp_path / "notes.db").read_bytes()
    line = one_error_line(autumn("--db", "sqlite:///notes.db", "customers", "list"))
    assert (
        line
        == "error: store_error: cannot use SQLite database notes.db: it is not a SQLite database"
    )
    assert (tmp_path / "notes.db").read_bytes() == before


def test_someone_elses_sqlite_file_is_refused_unchanged(autumn: Run, tmp_path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "shop.db")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = (tmp_path / "shop.db").read_bytes()
    line = one_error_line(
        autumn("--db", "sqlite:///shop.db", "catalog", "push", str(REPO / "autumn.toml"))
    )
    assert "cannot use SQLite database shop.db: it holds someone else's tables" in line
    assert (tmp_path / "shop.db").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.db"]


def test_long_ids_are_shortened_in_errors(autumn: Run, pushed: None) -> None:
    ghost = "g" * 200
    line = one_error_line(autumn("customers", "show", ghost))
    assert line == (
        "error: customer_not_found: customer 'gggggggggggggggggggggggg...gggggggggggg'"
        " (200 characters) does not exist"
    )
    assert len(line) < 120


def test_unknown_features_and_schemes_are_one_line(autumn: Run, pushed: None) -> None:
    assert autumn("track", "ann", "messages", "--create").returncode == 0
    line = one_error_line(autumn("check", "ann", "nope"))
    assert line == "error: feature_not_found: feature 'nope' does not exist"
    line = one_error_line(autumn("--db", "nope://x", "customers", "list"))
    assert line.startswith("error: invalid_request: ") and "'nope'" in line


def test_usage_mistakes_are_one_line_too(autumn: Run) -> None:
    result = autumn("check")
    assert result.returncode == 2
    assert result.stderr == (
        "error: usage: the following arguments are required: customer_id, feature_id"
        " (see `autumn check --help`)\n"
    )
    assert autumn("customers", "list", "--limit", "x").stderr.count("\n") == 1
