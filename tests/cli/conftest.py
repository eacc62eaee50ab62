"""Helpers for CLI tests: the real ``autumn`` console script, run in a subprocess in a temp dir."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

AUTUMN = str(Path(sys.executable).parent / "autumn")
REPO = Path(__file__).resolve().parents[2]

Run = Callable[..., subprocess.CompletedProcess[str]]


def run_autumn(
    args: list[str], cwd: Path, *, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "AUTUMN_DB"}
    full_env.update(env or {})
    return subprocess.run(
        [AUTUMN, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def autumn(tmp_path: Path) -> Run:
    """``autumn(*args)`` runs the console script in ``tmp_path``."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_autumn(list(args), tmp_path, env=env)

    return run


def invoice_count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM invoices").fetchone()[0])
    finally:
        conn.close()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command (asserting there is exactly one)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]
