"""The README's quick start and its `autumn` commands run as written, on a fresh directory."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import REPO, run_autumn

README = (REPO / "README.md").read_text()


def test_the_quick_start_runs_twice_in_a_row(tmp_path: Path) -> None:
    code = re.search(r"## Quick start\n.*?```python\n(.*?)```", README, re.S)
    assert code is not None
    (tmp_path / "quick_start.py").write_text(code.group(1))
    outputs = []
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "quick_start.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.strip())
    # the second run found ann and her upgrade, and only used one more message
    assert outputs == ["1000", "999"]


def test_the_readme_commands_run_in_order_on_the_shipped_catalog(tmp_path: Path) -> None:
    block = README.split("## The `autumn` command", 1)[1].split("```bash\n", 1)[1].split("```")[0]
    commands = [shlex.split(line.split(" #")[0]) for line in block.splitlines() if line.strip()]
    assert commands[0] == ["autumn", "catalog", "push", "autumn.toml"]
    shutil.copy(REPO / "autumn.toml", tmp_path / "autumn.toml")
    for argv in commands:
        result = run_autumn(argv[1:], tmp_path)
        assert result.returncode == 0, (argv, result.stderr)
        assert result.stderr == "", (argv, result.stderr)


def test_the_reserve_and_events_section_runs_after_the_quick_start(tmp_path: Path) -> None:
    """Given the quick start's engine, when the "Reserve and finalize" block runs after it (the
    webhook URL pointed at a closed local port: no network here), then the lock charged the
    confirmed 37, not the 50 held, and the in-process subscriber saw the customer's products."""
    quick = re.search(r"## Quick start\n.*?```python\n(.*?)```", README, re.S)
    block = re.search(r"## Reserve and finalize.*?```python\n(.*?)```", README, re.S)
    assert quick is not None and block is not None
    start = quick.group(1).replace("billing.close()\n", "")
    code = block.group(1).replace("https://app.example/hooks", "http://127.0.0.1:9/hooks")
    after = 'print(billing.customers.get("user-1").features["messages"].remaining)\n'
    (tmp_path / "reserve.py").write_text(start + code + after + "billing.close()\n")
    result = subprocess.run(
        [sys.executable, "reserve.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    # quick start: 1000 left on pro (the track was on free); then 37 confirmed of the 50 held
    assert (lines[0], lines[-1]) == ("1000", "963")
    assert any(line.startswith("customer.products.updated ") for line in lines)
