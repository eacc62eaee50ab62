"""Timing helpers shared by the benchmarks: percentiles of per-call times, JSON output."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def time_calls(fn: Callable[[], object], *, n: int, warmup: int = 200) -> dict[str, float]:
    """Run ``fn`` n times; return p50/p99/mean in microseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "mean_us": statistics.fmean(samples) / 1000,
        "n": n,
    }


def write(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": platform.platform(), "python": platform.python_version(), **figures}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path
