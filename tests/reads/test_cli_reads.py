"""The CLI reads without billing: on a database whose clock stopped in the past, listing and
showing customers today records no invoice, although their renewals are long due. (The demo
itself now ends at the moment it runs, so the overdue database is made here.)"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from autumn_cli.demo import example_catalog
from autumn_cli.engine import save_catalog
from autumn_core import ManualClock
from autumn_core import open as open_billing

AUTUMN = [sys.executable, "-m", "autumn_cli.main"]


def invoice_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute("SELECT count(*) FROM invoices").fetchone()
    return int(n)


def test_customers_list_after_the_demo_records_no_invoice(tmp_path: Path) -> None:
    db = tmp_path / "autumn.db"
    clock = ManualClock(datetime(2025, 3, 1, 9, 0, tzinfo=UTC))
    with open_billing(f"sqlite:///{db}", catalog=example_catalog(), clock=clock) as billing:
        save_catalog(billing, example_catalog())
        billing.attach("bob", "pro", free_trial=None)
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
