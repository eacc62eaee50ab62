"""The CLI reads without billing: after the demo (whose clock stops in the past), listing and
showing customers today records no invoice, although their renewals are long due."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

AUTUMN = [sys.executable, "-m", "autumn_cli.main"]


def invoice_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute("SELECT count(*) FROM invoices").fetchone()
    return int(n)


def test_customers_list_after_the_demo_records_no_invoice(tmp_path: Path) -> None:
    demo = subprocess.run([*AUTUMN, "demo"], cwd=tmp_path, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr
    db = tmp_path / "autumn.db"
    before = invoice_count(db)
    assert before > 0
    for args in (["customers", "list"], ["customers", "show", "bob"]):
        shown = subprocess.run([*AUTUMN, *args], cwd=tmp_path, capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
        assert "bob" in shown.stdout
    assert invoice_count(db) == before
    # process-due is the write that bills what is due.
    due = subprocess.run([*AUTUMN, "process-due"], cwd=tmp_path, capture_output=True, text=True)
    assert due.returncode == 0, due.stderr
    assert invoice_count(db) > before
