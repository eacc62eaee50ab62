"""Running a machine outside pytest: a fixed budget and seed, and the shortest failing calls."""

from __future__ import annotations

import attrs
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.stateful import get_state_machine_test

from autumn_core.testing.machine import CatalogMachine, InvariantBroken


@attrs.frozen
class Counterexample:
    """What a failing run found: the problem, the calls (shortest found) and a test to paste."""

    problem: str
    calls: tuple[str, ...]
    report: str

    def __str__(self) -> str:
        return self.report


def run_machine(
    machine: type[CatalogMachine],
    *,
    examples: int = 100,
    steps: int = 20,
    seed_value: int = 0,
) -> Counterexample | None:
    """Run ``machine`` for ``examples`` generated runs of up to ``steps`` calls from a fixed
    ``seed_value``; return the counterexample hypothesis shrank to, or None when none failed."""
    config = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        print_blob=False,
        report_multiple_bugs=False,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    test = seed(seed_value)(get_state_machine_test(machine, settings=config))
    machine.last_transcript = None
    try:
        test()
    except InvariantBroken as exc:
        return _found(machine, str(exc).split("\n\nafter these", 1)[0])
    except Exception as exc:  # anything else the engine raised, with the same transcript
        if machine.last_transcript is None:
            raise  # the machine could not even start (a store that cannot be opened)
        return _found(machine, f"{type(exc).__name__}: {exc}")
    return None


def _found(machine: type[CatalogMachine], problem: str) -> Counterexample:
    transcript = machine.last_transcript
    assert transcript is not None
    calls = tuple(line.source for line in transcript.lines)
    # The last run is the one hypothesis reports: the shortest it found.
    report = _report(machine, problem)
    return Counterexample(problem, calls, report)


def _report(machine: type[CatalogMachine], problem: str) -> str:
    transcript = machine.last_transcript
    assert transcript is not None
    body = "\n".join(transcript.body("    "))
    test = transcript.as_test(start=machine.start, gateway=machine.gateway_source, problem=problem)
    return (
        f"counterexample: {problem}\n\n"
        f"the shortest list of calls found ({len(transcript)}), on a fresh engine:\n{body}\n\n"
        f"as a test:\n\n{test}\n"
    )
