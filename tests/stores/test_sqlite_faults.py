"""SQLite under real faults: a full disk (a small tmpfs) and a read-only file system.

Root bypasses file permission bits (a chmod 0444 file stays writable for root, and CI runs as
root), so "read-only" is a real read-only mount: the tmpfs remounted ``ro``, which makes the
database file and its directory read-only for everyone. (Linux refuses to remount a file
system read-only while a file on it is open for writing, so the store is closed first.) Mounting needs root (CAP_SYS_ADMIN);
without it these tests fail with that reason rather than skip.

After each fault: every call returned or raised a typed ``StoreError``; successful returns =
usage = events; the file passes ``PRAGMA integrity_check``; once the fault is gone, calls work.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autumn_core import Autumn, Catalog, Feature, Item, Product
from autumn_core.errors import AutumnError, StoreError
from autumn_sqlite import SqliteStore


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product(
                "free",
                default=True,
                items=[Item.feature("messages", included=10**9, reset="month")],
            )
        ],
    )


def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed (these tests need root): {res.stderr}")


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted afterwards."""
    where = Path(tempfile.mkdtemp(prefix="autumn-tmpfs-"))
    _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where))
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        with contextlib.suppress(OSError):
            where.rmdir()


def fill(where: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to free the space)."""
    filler = where / "filler"
    with open(filler, "wb") as out:
        chunk = b"\0" * 65536
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with contextlib.suppress(OSError), open(filler, "ab") as out:
        while True:  # the last few bytes
            out.write(b"\0")
            out.flush()
    return filler


def usage(billing: Autumn, cid: str) -> object:
    return billing.customers.get(cid).features["messages"].usage


def events(billing: Autumn, cid: str) -> int:
    return len(billing.events.list(cid, limit=1000))


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_a_full_disk_fails_writes_with_a_store_error_and_loses_nothing(small_disk: Path) -> None:
    """Given an engine on a file in a small tmpfs, when the file system is full, then tracks
    fail with a StoreError (never a raw error, never a partial write), reads still work, the
    file is intact, and once space is freed tracks succeed again; successful returns = usage =
    events throughout."""
    path = small_disk / "billing.db"
    billing = Autumn(catalog(), store=SqliteStore(path))
    ok = 0
    for i in range(20):
        billing.track("c", "messages", value=1, properties={"i": i})
        ok += 1
    filler = fill(small_disk)
    failures: list[AutumnError] = []
    for i in range(200):
        try:
            billing.track("c", "messages", value=1, properties={"pad": "x" * 2000, "i": i})
            ok += 1
        except StoreError as exc:
            failures.append(exc)
            if len(failures) >= 3:
                break
    assert failures, "the full disk never refused a write"
    assert all("full" in f.message.lower() for f in failures), failures
    assert usage(billing, "c") == ok == events(billing, "c")
    filler.unlink()
    billing.track("c", "messages", value=1)
    ok += 1
    assert usage(billing, "c") == ok == events(billing, "c")
    billing.close()
    assert integrity(path) == "ok"


def test_a_read_only_file_system_refuses_writes_with_a_store_error(small_disk: Path) -> None:
    """Given a database with one track, when its file system is remounted read-only (the file
    and its directory become read-only, even for root), then opening it and tracking raise a
    StoreError naming the cause, nothing changes, and after remounting read-write the engine
    works on the same data."""
    path = small_disk / "billing.db"
    billing = Autumn(catalog(), store=SqliteStore(path))
    billing.track("c", "messages", value=1)
    billing.close()
    before = path.read_bytes()
    _mount("-o", "remount,ro", str(small_disk))
    try:
        with pytest.raises(StoreError) as raised:
            again = Autumn(catalog(), store=SqliteStore(path))
            try:
                again.track("c", "messages", value=1)
            finally:
                again.close()
        assert "read" in raised.value.message.lower() or "open" in raised.value.message.lower()
    finally:
        _mount("-o", "remount,rw", str(small_disk))
    assert path.read_bytes() == before
    billing = Autumn(catalog(), store=SqliteStore(path))
    assert usage(billing, "c") == 1 == events(billing, "c")
    billing.track("c", "messages", value=1)
    assert usage(billing, "c") == 2 == events(billing, "c")
    billing.close()
    assert integrity(path) == "ok"
