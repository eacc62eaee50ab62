"""Run mutmut over one module of the engine, with the narrowest tests that cover it.

    python tests/mutation/run.py classify          # one module (see MODULES), fresh copy
    python tests/mutation/run.py classify --rerun  # only its survivors, against today's tests
    python tests/mutation/run.py --list            # the modules and their tests

Each module gets its own scratch copy under ``$MUTATION_SCRATCH`` (default
``/tmp/autumn-mutation``): the package, the adapters the tests import, the tests it names and
``pyproject.toml``, with a ``setup.cfg`` mutating that one file. The rules are pure functions of
data and ``now``, so the copy runs the behaviour tests on MemoryStore only (the other stores are
proven alike by the differential suite); that keeps one mutant to a fraction of a second.
The run ends with the counts and the survivors, which tests/MUTATION.md records.

Not run in CI (minutes per module); mutmut is installed into the developer's venv only.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: module -> (source file, the tests that reach it)
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "classify": (
        "autumn_core/rules/classify.py",
        ("tests/engine/test_classify.py", "tests/lifecycle"),
    ),
    "order": ("autumn_core/rules/order.py", ("tests/engine", "tests/balances")),
    "periods": (
        "autumn_core/rules/periods.py",
        (
            "tests/engine",
            "tests/lifecycle/test_cancel_renew.py",
            "tests/lifecycle/test_trials.py",
            "tests/lifecycle/test_trial_idempotency_boundaries.py",
        ),
    ),
    "deduction": ("autumn_core/rules/deduction.py", ("tests/engine", "tests/balances")),
    "rows": ("autumn_core/rules/rows.py", ("tests/engine", "tests/balances", "tests/lifecycle")),
    "balance_view": (
        "autumn_core/rules/balance_view.py",
        ("tests/engine", "tests/balances", "tests/core"),
    ),
    "limits": (
        "autumn_core/rules/limits.py",
        (
            "tests/engine/test_limits_rules.py",
            "tests/controls/test_limits.py",
            "tests/controls/test_credits.py",
            "tests/controls/test_signals.py",
        ),
    ),
    "aggregate": (
        "autumn_core/rules/aggregate.py",
        ("tests/engine/test_aggregate.py", "tests/core/test_balance_delete_aggregate_versions.py"),
    ),
    "pricing": ("autumn_core/rules/pricing.py", ("tests/engine", "tests/lifecycle")),
    "due": ("autumn_core/rules/due.py", ("tests/engine/test_due.py", "tests/lifecycle")),
    "trials": ("autumn_core/app/trials.py", ("tests/lifecycle",)),
    "unit": ("autumn_core/app/unit.py", ("tests/lifecycle", "tests/core")),
    "claim": ("autumn_core/app/attach/execution.py", ("tests/lifecycle",)),
    "own_trial": ("autumn_core/app/attach/planning.py", ("tests/lifecycle",)),
    "usage": ("autumn_core/app/usage.py", ("tests/lifecycle", "tests/core", "tests/balances")),
}

#: module -> the functions mutated in a module that holds more (the idempotency fingerprint and
#: replay of unit.py and usage.py); mutmut's names, ``ǁ`` between a class and its method.
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "unit": (
        "x__normal*",
        "x_args_fingerprint*",
        "xǁUnitǁreplay*",
        "xǁUnitǁremember*",
        "xǁUnitǁpk_of*",
    ),
    "usage": ("xǁTrackArgsǁfingerprint*", "x_track__*"),
    "claim": ("x_claim_or_replan*",),
    "own_trial": ("x__own_trial*",),
}


def _scratch(name: str) -> Path:
    base = Path(os.environ.get("MUTATION_SCRATCH", "/tmp/autumn-mutation"))
    return base / name


def prepare(name: str) -> Path:
    source, tests = MODULES[name]
    work = _scratch(name)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("autumn_core", "adapters"):
        shutil.copytree(ROOT / package, work / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    (work / "tests").mkdir()
    for helper in ("__init__.py", "conftest.py", "pg_cluster.py"):
        shutil.copy(ROOT / "tests" / helper, work / "tests" / helper)
    for test in tests:
        top = test.split("/")[1]
        if not (work / "tests" / top).exists():
            shutil.copytree(ROOT / "tests" / top, work / "tests" / top, ignore=ignore)
    conftest = work / "tests" / "conftest.py"
    text = conftest.read_text()
    stores = 'STORES = ("memory", "sqlite", "postgres")'
    if stores not in text:
        raise SystemExit(f"tests/conftest.py no longer declares {stores}: update {__file__}")
    conftest.write_text(text.replace(stores, 'STORES = ("memory",)'))
    selection = "\n    ".join(tests)
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths=autumn_core\n"
        f"only_mutate=\n    {source}\n"
        f"pytest_add_cli_args_test_selection=\n    {selection}\n"
        "pytest_add_cli_args=-p no:cacheprovider -x -q\n"
        "also_copy=\n    adapters\n"
    )
    return work


def refresh_tests(name: str) -> Path:
    """Copy the module's tests again into its existing scratch copy (the source is unchanged)."""
    _, tests = MODULES[name]
    work = _scratch(name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for top in {test.split("/")[1] for test in tests}:
        shutil.rmtree(work / "tests" / top)
        shutil.copytree(ROOT / "tests" / top, work / "tests" / top, ignore=ignore)
    return work


def summary(name: str) -> tuple[Counter[str], list[str]]:
    from mutmut.stats import status_by_exit_code

    source, _ = MODULES[name]
    meta = _scratch(name) / "mutants" / f"{source}.meta"
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    counts: Counter[str] = Counter()
    survivors = []
    prefix = source.removesuffix(".py").replace("/", ".")
    chosen = [f"{prefix}.{fn}" for fn in FUNCTIONS.get(name, ())]
    for key, code in sorted(codes.items()):
        if chosen and not any(fnmatch.fnmatchcase(key, pattern) for pattern in chosen):
            continue
        status = status_by_exit_code[code]
        counts[status] += 1
        if status in ("survived", "no tests"):
            survivors.append(f"{key}: {status}")
    return counts, survivors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("module", nargs="?", choices=sorted(MODULES))
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--summary", action="store_true", help="only print the last run's counts")
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="run only the last run's survivors again, against the tests as they are now",
    )
    parser.add_argument("--max-children", default="2")
    args = parser.parse_args()
    if args.list or args.module is None:
        for name, (source, tests) in MODULES.items():
            print(f"{name:13} {source:36} {' '.join(tests)}")
        return
    if not args.summary:
        mutmut = Path(sys.executable).with_name("mutmut")
        cmd = ["nice", "-n", "10", str(mutmut), "run", "--max-children", args.max_children]
        if args.rerun:
            cmd += [line.split(":")[0] for line in summary(args.module)[1]]
            work = refresh_tests(args.module)
        else:
            work = prepare(args.module)
            prefix = MODULES[args.module][0].removesuffix(".py").replace("/", ".")
            cmd += [f"{prefix}.{fn}" for fn in FUNCTIONS.get(args.module, ())]
        subprocess.run(cmd, cwd=work, check=False)
    counts, survivors = summary(args.module)
    total = sum(counts.values())
    killed = counts["killed"] + counts["timeout"]
    print(f"{args.module}: {total} mutants, " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    print(f"score {killed}/{total} = {100 * killed // max(total, 1)}%")
    for line in survivors:
        print("  " + line)


if __name__ == "__main__":
    main()
