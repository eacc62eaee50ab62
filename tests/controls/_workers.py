"""Code run in child processes by the multi-process lock races (light to import under spawn)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from typing import Any

import autumn_core
from autumn_core import ManualClock
from tests.conftest import T0
from tests.controls.conftest import controls_catalog


def reserve(url: str, prefix: str, n: int, amount: int, start: Barrier, out: Any) -> None:
    """``n`` checks with a lock of ``amount`` tokens; report the lock ids that were granted."""
    billing = autumn_core.open(url, catalog=controls_catalog(), clock=ManualClock(T0))
    granted: list[str] = []
    start.wait()
    for i in range(n):
        lock_id = f"{prefix}-{i}"
        if billing.check(
            "u1", "tokens", required_balance=amount, lock={"lock_id": lock_id}
        ).allowed:
            granted.append(lock_id)
    billing.close()
    out.put(granted)
