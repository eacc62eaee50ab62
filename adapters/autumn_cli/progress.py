"""Progress bars for long work: on a terminal only, never in pipes, logs or tests."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress(*, total: int, unit: str, desc: str) -> tqdm[Any]:
    """A tqdm bar on stderr, disabled when stderr is not a TTY (then it prints nothing)."""
    return tqdm(
        total=total,
        unit=unit,
        desc=desc,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
    )
