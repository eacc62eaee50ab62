"""Run every benchmark, each several times, and compare its ratios with the previous results.

    .venv/bin/python -m benchmarks                      # every benchmark, 3 runs each
    .venv/bin/python -m benchmarks --only memory,sqlite --repeat 5
    .venv/bin/python -m benchmarks --skip stripe,dashboard

Each benchmark script runs in its own process (under ``nice``, the machines are shared) and
writes ``results/<name>.json``; after every run its figures are read back. A figure is always a
ratio against a floor measured in the same run (``FIGURES`` names each floor), so runs on
machines of different speed compare. The table (``results/SUMMARY.md``) shows, per figure, the
median of the runs with their spread, and the previous median (``results/summary.json`` of the
last full run, else the single-run JSON files that were there before this run).

The growth curves (``bench_growth.py``) take an hour or more and run only when named:
``--only growth``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SUMMARY_JSON = RESULTS / "summary.json"
SUMMARY_MD = RESULTS / "SUMMARY.md"


@dataclass(frozen=True)
class Figure:
    """One figure of one benchmark: ``value`` beside ``floor`` (paths into its JSON)."""

    key: str
    label: str
    value: str
    floor: str
    floor_label: str
    #: "time": lower is better, ratio = value / floor ("x the floor").
    #: "rate": higher is better, ratio = value / floor ("% of the floor").
    kind: str
    unit: str


def _t(key: str, label: str, value: str, floor: str, floor_label: str) -> Figure:
    return Figure(key, label, value, floor, floor_label, "time", "us")


def _r(key: str, label: str, value: str, floor: str, floor_label: str, unit: str = "/s") -> Figure:
    return Figure(key, label, value, floor, floor_label, "rate", unit)


FIGURES: dict[str, list[Figure]] = {
    "memory": [
        _t("check", "check p50", "check.p50_us", "floor_check.p50_us", "dict lookup + compare"),
        _t(
            "track",
            "track p50",
            "track.p50_us",
            "floor_track.p50_us",
            "dict lookup + Decimal update",
        ),
    ],
    "stacked": [
        _t(
            "track_5",
            "track over 5 stacked rows p50",
            "track_five_rows.p50_us",
            "track_single_row.p50_us",
            "track over 1 row",
        ),
        _t(
            "check_5",
            "check over 5 stacked rows p50",
            "check_five_rows.p50_us",
            "check_single_row.p50_us",
            "check over 1 row",
        ),
    ],
    "attach": [
        _t(
            "new",
            "attach, new paid product p50",
            "attach_new.p50_us",
            "reference_track.p50_us",
            "a track on the same engine",
        ),
        _t(
            "upgrade",
            "attach, upgrade with proration p50",
            "attach_upgrade.p50_us",
            "reference_track.p50_us",
            "a track on the same engine",
        ),
    ],
    "sqlite": [
        _t("check", "check p50", "check.p50_us", "floor_check.p50_us", "raw sqlite3 read txn"),
        _r(
            "track_normal",
            "track/s, synchronous=NORMAL",
            "track_per_s_NORMAL",
            "floor_track_per_s_NORMAL",
            "raw UPDATE+INSERT txn, NORMAL",
        ),
        _r(
            "track_full",
            "track/s, synchronous=FULL",
            "track_per_s_FULL",
            "floor_track_per_s_FULL",
            "raw UPDATE+INSERT txn, FULL",
        ),
        _r(
            "track_many",
            "track_many, 100 per call, events/s",
            "track_many_events_per_s",
            "floor_track_per_s_NORMAL",
            "raw UPDATE+INSERT txn, NORMAL",
        ),
        _r(
            "hot_4proc",
            "4 processes, one hot customer, tracks/s",
            "hot_4proc.aggregate_per_s",
            "floor_track_per_s_NORMAL",
            "raw UPDATE+INSERT txn, 1 process",
        ),
    ],
    "group_commit": [
        _r(
            "threads_8",
            "8 threads, distinct customers, tracks/s (group commit)",
            "threads.per_s",
            "floor_serial_per_s",
            "raw 1 txn per track, FULL",
        ),
        _r(
            "procs_4",
            "4 processes, distinct customers, tracks/s",
            "procs.per_s",
            "floor_serial_per_s",
            "raw 1 txn per track, FULL",
        ),
        _r(
            "serial",
            "1 thread, tracks/s",
            "serial.per_s",
            "floor_serial_per_s",
            "raw 1 txn per track, FULL",
        ),
    ],
    "postgres": [
        _t("check", "check p50", "check.p50_us", "floor_check.p50_us", "raw psycopg read"),
        _r(
            "track",
            "track/s, one connection",
            "track_per_s",
            "floor_track_per_s",
            "raw psycopg, 5 statements",
        ),
        _r(
            "track_pipelined",
            "track/s vs a pipelined floor",
            "track_per_s",
            "floor_pipelined_track_per_s",
            "raw psycopg, pipelined",
        ),
        _r(
            "distinct_4proc",
            "4 processes, distinct customers, tracks/s",
            "distinct_4proc.per_s",
            "floor_distinct_4proc.per_s",
            "raw psycopg, 4 processes",
        ),
        _r(
            "hot_4proc",
            "4 processes, one hot customer, tracks/s",
            "hot_4proc.per_s",
            "floor_hot_4proc.per_s",
            "raw psycopg hot row, 4 processes",
        ),
    ],
    "stripe": [
        Figure(
            f"attach_{store}",
            f"paid attach p50, {store} store",
            f"paid_attach[store={store}].library_p50_ms",
            f"paid_attach[store={store}].bare_sdk_p50_ms",
            "bare Stripe SDK calls",
            "time",
            "ms",
        )
        for store in ("memory", "sqlite")
    ],
    "wire": [
        _r(
            name,
            f"HTTP {name.replace('_', ' on ')} requests/s",
            f"{name}.req_per_s",
            "floor_constant_json.req_per_s",
            "constant-JSON route",
        )
        for name in ("check", "track", "check_sqlite", "track_sqlite")
    ],
    "controls": [
        fig
        for store in ("memory", "sqlite", "postgres")
        for fig in (
            _t(
                f"lock_finalize_{store}",
                f"check with lock + finalize on {store} p50",
                f"{store}.lock_finalize.p50_us",
                f"{store}.track.p50_us",
                f"a plain track on {store}",
            ),
            _t(
                f"controlled_track_{store}",
                f"track under billing controls on {store} p50",
                f"{store}.controlled_track.p50_us",
                f"{store}.track.p50_us",
                f"a plain track on {store}",
            ),
            _t(
                f"busy_track_{store}",
                f"track beside 100 open locks on {store} p50",
                f"{store}.busy_track.p50_us",
                f"{store}.track.p50_us",
                f"a plain track on {store}",
            ),
            _t(
                f"busy_lock_finalize_{store}",
                f"check with lock + finalize beside 100 open locks on {store} p50",
                f"{store}.busy_lock_finalize.p50_us",
                f"{store}.lock_finalize.p50_us",
                f"the same with no lock open, on {store}",
            ),
            _t(
                f"busy_controlled_track_{store}",
                f"track under billing controls beside 100 open locks on {store} p50",
                f"{store}.busy_controlled_track.p50_us",
                f"{store}.controlled_track.p50_us",
                f"the same with no lock open, on {store}",
            ),
        )
    ]
    + [
        _t(
            f"{name}_lz4_postgres",
            f"{label} beside 100 open locks on postgres, heads in lz4, p50",
            f"postgres.{name}.p50_us",
            f"postgres.pglz_{name}.p50_us",
            "the same with heads in pglz (schema 2)",
        )
        for name, label in (
            ("busy_lock_finalize", "check with lock + finalize"),
            ("busy_controlled_track", "track under billing controls"),
        )
    ]
    + [
        _t(
            f"raw_receipt_pair_{store}",
            f"raw floor: hold + settle with a lock receipt on {store} p50",
            f"{store}.raw_floor.receipt_pair_p50_us",
            f"{store}.raw_floor.track_p50_us",
            f"a raw track on {store}",
        )
        for store in ("sqlite", "postgres")
    ],
    "dashboard": [
        _t(
            "page_first",
            "customers page (first) p50",
            "page_50_first.p50_us",
            "list_50_first.p50_us",
            "customers.list(limit=50)",
        ),
        _t(
            "page_middle",
            "customers page (middle) p50",
            "page_50_middle.p50_us",
            "list_50_middle.p50_us",
            "customers.list(limit=50)",
        ),
        _t(
            "search_common",
            "search, common term p50",
            "search_common.p50_us",
            "list_50_first.p50_us",
            "customers.list(limit=50)",
        ),
    ],
}
ORDER = list(FIGURES)
ON_REQUEST = ["growth"]


def lookup(data: Any, path: str) -> float | None:
    """``a.b`` into dicts; ``list[k=v]`` picks the list item whose ``k`` is ``v``."""
    for part in path.split("."):
        if "[" in part:
            name, _, sel = part.partition("[")
            k, _, v = sel.rstrip("]").partition("=")
            items = data.get(name) if isinstance(data, dict) else None
            data = next((i for i in items or [] if str(i.get(k)) == v), None)
        else:
            data = data.get(part) if isinstance(data, dict) else None
        if data is None:
            return None
    return float(data) if isinstance(data, int | float) else None


def extract(name: str, data: dict[str, Any]) -> dict[str, dict[str, float]]:
    out = {}
    for f in FIGURES.get(name, []):
        value, floor = lookup(data, f.value), lookup(data, f.floor)
        if value is not None and floor:
            out[f.key] = {"value": value, "floor": floor, "ratio": value / floor}
    return out


def previous() -> dict[str, dict[str, dict[str, float]]]:
    """The medians of the last full run, else single runs from the per-benchmark files."""
    if SUMMARY_JSON.exists():
        return {
            b: {k: {"ratio": v["ratio"]} for k, v in figs.items()}
            for b, figs in json.loads(SUMMARY_JSON.read_text())["figures"].items()
        }
    found = {}
    for name in FIGURES:
        path = RESULTS / f"{name}.json"
        if path.exists():
            found[name] = extract(name, json.loads(path.read_text()))
    return found


def run_once(name: str, nice: int, extra: list[str]) -> dict[str, Any]:
    script = HERE / f"bench_{name}.py"
    cmd = [sys.executable, str(script), *extra]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    took = time.monotonic() - t0
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"bench_{name}.py failed ({done.returncode}): " + " | ".join(tail))
    print(f"  bench_{name}.py: {took:.0f} s", flush=True)
    data: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text())
    return data


def summarise(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    keys = sorted({k for r in runs for k in r})
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        got = [r[k] for r in runs if k in r]
        ratios = [g["ratio"] for g in got]
        out[k] = {
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "value": statistics.median(g["value"] for g in got),
            "floor": statistics.median(g["floor"] for g in got),
            "runs": got,
        }
    return out


def _num(v: float, unit: str) -> str:
    if unit == "/s":
        return f"{v:,.0f}/s"
    if unit == "us" and v >= 1000:
        return f"{v / 1000:,.2f} ms"
    return f"{v:,.2f} {unit}" if v < 100 else f"{v:,.0f} {unit}"


def _ratio(v: float, kind: str) -> str:
    return f"{v:.0%}" if kind == "rate" else f"{v:.2f}x"


def table(
    figures: dict[str, dict[str, dict[str, Any]]],
    before: dict[str, dict[str, dict[str, float]]],
    repeat: int,
) -> str:
    lines = [
        f"Medians of {repeat} runs; the spread is the lowest and highest ratio of the runs. "
        "A time ratio is `value / floor` (lower is better), a rate ratio is `value / floor` as a "
        "share (higher is better).",
        "",
        "| benchmark | figure | value | floor (same run) | ratio [spread] | previous | change |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ORDER:
        for f in FIGURES[name]:
            got = figures.get(name, {}).get(f.key)
            if got is None:
                continue
            prev = before.get(name, {}).get(f.key)
            if prev:
                change = got["ratio"] / prev["ratio"] - 1
                better = change < 0 if f.kind == "time" else change > 0
                mark = "better" if better else "worse"
                change_s = f"{change:+.0%} ({mark})" if abs(change) >= 0.05 else f"{change:+.0%}"
                prev_s = _ratio(prev["ratio"], f.kind)
            else:
                change_s = prev_s = "-"
            lines.append(
                f"| {name} | {f.label} | {_num(got['value'], f.unit)} | "
                f"{_num(got['floor'], f.unit)} ({f.floor_label}) | "
                f"{_ratio(got['ratio'], f.kind)} [{_ratio(got['ratio_min'], f.kind)}-"
                f"{_ratio(got['ratio_max'], f.kind)}] | {prev_s} | {change_s} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs of each benchmark (default 3)")
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    ap.add_argument("--skip", default="", help="comma-separated benchmark names to leave out")
    ap.add_argument("--nice", type=int, default=10, help="nice level of the runs (0: none)")
    args = ap.parse_args(argv)
    only = [n for n in args.only.split(",") if n]
    skip = {n for n in args.skip.split(",") if n}
    names = [n for n in (only or ORDER) if n not in skip]
    unknown = [n for n in names if n not in FIGURES and n not in ON_REQUEST]
    if unknown:
        ap.error(f"unknown benchmarks {unknown}; known: {ORDER + ON_REQUEST}")
    before = previous()
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    failed: list[str] = []
    for name in names:
        print(f"{name} ({args.repeat} runs)", flush=True)
        runs = []
        for _ in range(args.repeat):
            try:
                runs.append(extract(name, run_once(name, args.nice, [])))
            except RuntimeError as exc:
                print(f"  {exc}", flush=True)
                failed.append(name)
                break
        if runs and name in FIGURES:
            figures[name] = summarise(runs)
    if only and SUMMARY_JSON.exists():  # a partial run keeps the other benchmarks' figures
        kept = json.loads(SUMMARY_JSON.read_text())["figures"]
        figures = {**{k: v for k, v in kept.items() if k not in figures}, **figures}
    text = table(figures, before, args.repeat)
    SUMMARY_MD.write_text("# Benchmark summary (`python -m benchmarks`)\n\n" + text)
    SUMMARY_JSON.write_text(
        json.dumps(
            {"repeat": args.repeat, "figures": figures, "failed": failed}, indent=1, sort_keys=True
        )
        + "\n"
    )
    print(text)
    print(f"written to {SUMMARY_MD} and {SUMMARY_JSON}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
