"""The machine finds planted bugs: a broken trial claim, refund and reset, each patched into the
engine, are reported with a short counterexample within a fixed budget (200 runs, seed 0)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
import pytest

import autumn_core.app.attach.planning as attach_planning
import autumn_core.app.lazy as lazy
import autumn_core.rules.deduction as deduction
from autumn_cli.demo import example_catalog
from autumn_core.model import replace
from autumn_core.testing import Counterexample, catalog_machine, run_machine

BUDGET = 200


def find() -> Counterexample:
    found = run_machine(catalog_machine(example_catalog()), examples=BUDGET, seed_value=0)
    assert found is not None, "the machine missed the planted bug"
    return found


def test_no_counterexample_without_a_planted_bug() -> None:
    assert run_machine(catalog_machine(example_catalog()), examples=BUDGET, seed_value=0) is None


def test_a_trial_claim_without_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    own = attach_planning._own_trial

    def forgets_the_fingerprint(*args: Any) -> Any:
        trial, claim = own(*args)
        return trial, attrs.evolve(claim, fingerprint=None) if claim else None

    monkeypatch.setattr(attach_planning, "_own_trial", forgets_the_fingerprint)
    found = find()
    assert "trials of 'pro'" in found.problem and "per fingerprint" in found.problem
    assert len(found.calls) <= 4
    assert sum(call.startswith('billing.attach("') for call in found.calls) == 2
    assert "def test_counterexample():" in found.report


def test_a_refund_that_keeps_the_excess(monkeypatch: pytest.MonkeyPatch) -> None:
    refund = deduction._refund

    def keeps_the_excess(candidates: Any, amount: Decimal, dry_run: bool) -> Any:
        done = refund(candidates, amount, dry_run)
        if done.remainder <= 0 or not candidates or dry_run:
            return done
        first = candidates[0].row
        row = done.changed.get(first.id, first)
        changed = {**done.changed, first.id: replace(row, balance=row.balance + done.remainder)}
        return deduction.Deduction(changed, done.applied, Decimal(0))

    monkeypatch.setattr(deduction, "_refund", keeps_the_excess)
    found = find()
    assert "above granted" in found.problem
    assert len(found.calls) <= 2
    assert 'value=Decimal("-' in found.calls[-1]


def test_a_reset_that_does_not_refill(monkeypatch: pytest.MonkeyPatch) -> None:
    reset_row = lazy.reset_row

    def keeps_the_balance(row: Any, now: Any, **kwargs: Any) -> Any:
        return replace(reset_row(row, now, **kwargs), balance=row.balance)

    monkeypatch.setattr(lazy, "reset_row", keeps_the_balance)
    found = find()
    assert "reset" in found.problem and "not its granted" in found.problem
    assert len(found.calls) <= 3
    assert found.calls[-1].startswith("clock.advance(")
