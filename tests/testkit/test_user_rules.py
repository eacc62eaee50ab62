"""Users' own rules on top of the machine: the README's five lines, the docs' examples, the CLI
and the pytest plugin."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from autumn_cli.demo import example_catalog
from autumn_cli.main import main as autumn
from autumn_core import Autumn, Catalog, Feature, FreeTrial, Item, Price, Product
from autumn_core.testing import InvariantBroken, catalog_machine, invariant, run_machine

# -- the README's test of a custom trial rule (five lines beyond imports) -------------------------
catalog = example_catalog()


class TrialRules(catalog_machine(catalog)):  # type: ignore[misc]
    @invariant()
    def trials_last_two_weeks_at_most(self) -> None:
        assert all(t.ends_at - t.started_at <= timedelta(days=14) for t in self.trials())


TestTrialRules = TrialRules.TestCase


def test_the_readme_rule_has_teeth() -> None:
    """Given the same rule on a catalog whose pro trial lasts 30 days, the machine breaks it."""
    longer = Catalog(
        features=list(catalog.features),
        products=[
            attrs.evolve(p, free_trial=FreeTrial(30, card_required=False)) if p.free_trial else p
            for p in catalog.products
        ],
    )

    class Longer(catalog_machine(longer)):  # type: ignore[misc]
        @invariant()
        def trials_last_two_weeks_at_most(self) -> None:
            if not all(t.ends_at - t.started_at <= timedelta(days=14) for t in self.trials()):
                self.fail("a trial longer than two weeks")

    found = run_machine(Longer, examples=100)
    assert found is not None and found.problem == "a trial longer than two weeks"
    assert len(found.calls) == 1 and '"pro"' in found.calls[0]


# -- "a customer on team never has more than 5 seats" --------------------------------------------
def team_catalog(max_purchase: int | None) -> Catalog:
    return Catalog(
        features=[Feature.allocated("seats")],
        products=[
            Product(
                "team",
                price=Price(50),
                items=[
                    Item.priced(
                        "seats", included=1, price=10, billing="usage", max_purchase=max_purchase
                    )
                ],
            )
        ],
    )


def test_seats_capped_by_max_purchase_hold() -> None:
    assert run_machine(_seat_machine(4), examples=150) is None


def test_seats_without_a_cap_break_the_rule() -> None:
    found = run_machine(_seat_machine(None), examples=150)
    assert found is not None and "seats on team" in found.problem


def _seat_machine(max_purchase: int | None) -> type:
    class SeatRule(catalog_machine(team_catalog(max_purchase))):  # type: ignore[misc]
        @invariant()
        def team_never_has_more_than_five_seats(self) -> None:
            for state in self.world().customers:
                live = {p.instance_id for p in state.products if p.product_id == "team"}
                seats = sum(r.usage for r in state.rows if r.cp_id in live)
                if seats > 5:
                    self.fail(f"customer {state.id} holds {seats} seats on team")

    return SeatRule


# -- "a fingerprint seen on a refunded account never gets a trial" --------------------------------
def test_refunded_fingerprints_get_trials_unless_the_app_says_no() -> None:
    """The engine has no such rule, so an app that wants it must pass ``free_trial=None``
    itself; the invariant catches the engine's default."""

    class Refunds(catalog_machine(example_catalog())):  # type: ignore[misc]
        @invariant()
        def no_trial_after_a_refund(self) -> None:
            world = self.world()
            refunded = {
                s.fingerprint
                for s in world.customers
                if s.fingerprint and any(i.total < 0 for i in world.invoices[s.pk])
            }
            for t in self.trials():
                first_refund = min(
                    (
                        i.created_at
                        for s in world.customers
                        if s.fingerprint == t.fingerprint
                        for i in world.invoices[s.pk]
                        if i.total < 0
                    ),
                    default=None,
                )
                if t.fingerprint in refunded and first_refund and t.started_at >= first_refund:
                    self.fail(f"fingerprint {t.fingerprint} got a trial after a refund")

    machine = Refunds()
    machine.do_attach("c0", "enterprise", "fp-0", None, None, None)
    machine.billing.cancel("c0", "enterprise", immediately=True)
    machine.do_attach("c1", "pro", "fp-0", None, None, None)
    with pytest.raises(InvariantBroken, match="fingerprint fp-0 got a trial after a refund"):
        machine.no_trial_after_a_refund()
    machine.teardown()


# -- the command and the plugin ------------------------------------------------------------------
def test_the_command_prints_a_pasteable_counterexample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "autumn.toml"
    path.write_text(example_catalog().to_toml())
    assert autumn(["test-catalog", str(path), "--examples", "20"]) == 0
    assert "no counterexample in 20 runs" in capsys.readouterr().out


@pytest.mark.autumn_every_store
def test_the_plugin_runs_on_every_store(autumn_billing: Autumn) -> None:
    autumn_billing.track("c0", "messages", value=3)
    assert autumn_billing.customers.get("c0").features["messages"].remaining == 97


@pytest.fixture
def autumn_catalog() -> Catalog:
    return example_catalog()


def test_machines_and_helpers_start_at_the_same_instant() -> None:
    from autumn_core.testing import START
    from autumn_core.testing.machine import START as MACHINE_START

    assert MACHINE_START == START


def test_the_command_exits_1_with_the_calls_of_a_counterexample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import autumn_core.rules.deduction as deduction
    from autumn_core.model import replace

    refund = deduction._refund

    def keeps_the_excess(candidates: Any, amount: Any, dry_run: bool) -> Any:
        done = refund(candidates, amount, dry_run)
        if done.remainder <= 0 or not candidates or dry_run:
            return done
        first = candidates[0].row
        row = done.changed.get(first.id, first)
        changed = {**done.changed, first.id: replace(row, balance=row.balance + done.remainder)}
        return deduction.Deduction(changed, done.applied, done.remainder * 0)

    monkeypatch.setattr(deduction, "_refund", keeps_the_excess)
    path = tmp_path / "autumn.toml"
    path.write_text(example_catalog().to_toml())
    with pytest.raises(SystemExit) as exit_:
        autumn(["test-catalog", str(path), "--examples", "100", "--gateway", "none"])
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "above granted" in out and "def test_counterexample():" in out
    assert 'billing.track("c0"' in out


def test_postgresql_joins_the_marker_only_with_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from autumn_core.testing.plugin import POSTGRES_URL_VARIABLE, installed_stores

    monkeypatch.delenv(POSTGRES_URL_VARIABLE, raising=False)
    assert installed_stores() == ["memory", "sqlite"]
    monkeypatch.setenv(POSTGRES_URL_VARIABLE, "postgresql://u@127.0.0.1:1/x")
    assert installed_stores() == ["memory", "sqlite", "postgresql"]
