"""The ``autumn`` command: the demo, the everyday commands, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autumn_cli.demo import example_catalog
from autumn_cli.main import main

AUTUMN = [sys.executable, "-m", "autumn_cli.main"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AUTUMN, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_demo_runs_the_scenario_on_the_embedded_sqlite_default(tmp_path: Path) -> None:
    result = run(["demo"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "carol signs in and already holds: enterprise" in out
    assert "alice attaches pro: trialing" in out
    assert "alice-2 on the same device attaches pro: active, no trial, charged $20.00" in out
    assert "may he send 20 more? False" in out
    assert "bob upgrades free -> pro: upgrade, invoice $20.00" in out
    # The renewal bills bob's 250 messages beyond the 1000 included at $0.01.
    assert "overage 2.50" in out
    assert (tmp_path / "autumn.db").exists()
    # Running it again starts from a clean slate and prints the same story.
    again = run(["demo"], tmp_path)
    assert again.returncode == 0 and again.stdout == out


def test_demo_never_removes_a_database_it_did_not_make(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'autumn.db'}"
    assert main(["--db", db, "track", "real-user", "messages"]) == 0
    result = run(["demo"], tmp_path)
    assert result.returncode == 1
    assert "holds data the demo did not create" in result.stderr
    assert main(["--db", db, "customers", "show", "real-user"]) == 0


def test_everyday_commands_on_a_pushed_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "autumn.toml"
    toml.write_text(example_catalog().to_toml())
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["--db", db, "catalog", "push", str(toml)]) == 0
    assert main(["--db", db, "track", "ann", "messages", "--value", "7"]) == 0
    assert main(["--db", db, "check", "ann", "messages", "--required", "93"]) == 0
    out = capsys.readouterr().out
    assert "catalog pushed: 3 features, 4 products" in out
    assert "| True " in out.replace("yes", "True") or "yes" in out
    assert main(["--db", db, "attach", "ann", "top_up", "--quantity", "messages=500"]) == 0
    assert main(["--db", db, "customers", "show", "ann"]) == 0
    assert main(["--db", db, "customers", "list"]) == 0
    assert main(["--db", db, "process-due"]) == 0
    out = capsys.readouterr().out
    assert "add_on" in out and "ann" in out and "customers updated" in out


def test_errors_print_one_line_and_exit_non_zero(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    result = run(["--db", db, "check", "ann", "nope"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: feature_not_found: feature 'nope' does not exist"
    result = run(["--db", db, "customers", "show", "ghost"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "customer_not_found" in result.stderr
    result = run(["--db", "nope://x", "customers", "list"], tmp_path)
    assert result.returncode == 1 and "invalid_request" in result.stderr


def test_console_script_is_installed() -> None:
    bindir = Path(sys.executable).parent
    assert os.access(bindir / "autumn", os.X_OK)
