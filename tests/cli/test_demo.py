"""``autumn demo``: a story that ends now, every customer shown, and a read afterwards that
moves no money."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.cli.conftest import Run, invoice_count, one_error_line

STAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


def test_the_demo_tells_its_story_and_shows_every_customer_it_made(
    autumn: Run, tmp_path: Path
) -> None:
    # when the demo runs on the embedded default
    result = autumn("demo")
    # then it tells the story, with money in two decimals and booleans as yes/no
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "carol signs in and already holds: enterprise" in out
    assert "alice attaches pro: trialing" in out
    assert "alice-2 on the same device attaches pro: active, no trial, charged $20.00" in out
    assert "may he send 20 more? no" in out
    assert "bob upgrades free -> pro: upgrade, invoice $20.00" in out
    assert "Pro: 250 messages overage 2.50; Pro 20.00" in out
    assert re.search(r" sso +\| yes +\| yes ", out)
    # and every customer it made has its own section, dave (created by a track) included
    listed = re.findall(r"^ (\S+) +\|", out.split("Customers\n", 1)[1].split("\n\n")[0], re.M)
    made = [c for c in listed if c != "id"]
    assert sorted(made) == ["alice", "alice-2", "bob", "carol", "dave"]
    for customer in made:
        assert f"Customer {customer} - balances" in out
    assert (tmp_path / "autumn.db").exists()
    # and running it again starts from a clean slate and tells the same story
    again = autumn("demo")
    assert again.returncode == 0
    assert STAMP.sub("<t>", again.stdout) == STAMP.sub("<t>", out)


def test_the_demo_story_ends_at_the_moment_it_runs(autumn: Run, tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    assert autumn("demo").returncode == 0
    after = datetime.now(UTC)
    conn = sqlite3.connect(tmp_path / "autumn.db")
    created = [
        datetime.fromisoformat(row[0])
        for row in conn.execute("SELECT json_extract(data, '$.created_at') FROM invoices")
    ]
    conn.close()
    # its last invoices are dated now (the renewal at the end of the month), none later
    assert max(created) >= before - timedelta(hours=5)
    assert max(created) <= after


def test_a_read_after_the_demo_records_no_invoice(autumn: Run, tmp_path: Path) -> None:
    # given the demo's database
    assert autumn("demo").returncode == 0
    db = tmp_path / "autumn.db"
    invoices = invoice_count(db)
    # when customers are listed and shown (reads, on the wall clock)
    assert autumn("customers", "list").returncode == 0
    assert autumn("customers", "show", "bob").returncode == 0
    assert autumn("check", "bob", "messages").returncode == 0
    # then no invoice was recorded
    assert invoice_count(db) == invoices


def test_the_demo_never_removes_a_database_it_did_not_make(autumn: Run, tmp_path: Path) -> None:
    assert autumn("track", "real-user", "messages", "--create").returncode == 0
    line = one_error_line(autumn("demo"))
    assert line == (
        "error: not_a_demo_database: autumn.db holds data the demo did not create; run the demo"
        " elsewhere with --db sqlite:///demo.db"
    )
    assert autumn("customers", "show", "real-user").returncode == 0
