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
