"""The catalog is visible: the shipped example, which catalog a command uses, and a push that
refuses to empty the catalog or drop what customers hold."""

from __future__ import annotations

from pathlib import Path

from autumn_cli.demo import example_catalog
from autumn_core import Catalog
from tests.cli.conftest import REPO, Run, one_error_line


def test_the_shipped_autumn_toml_is_the_example_catalog_the_readme_uses() -> None:
    assert Catalog.from_file(REPO / "autumn.toml") == example_catalog()
    assert "autumn catalog push autumn.toml" in (REPO / "README.md").read_text()


def test_a_command_says_which_catalog_it_uses_when_none_was_pushed(autumn: Run) -> None:
    result = autumn("track", "ann", "messages", "--create")
    assert result.returncode == 0
    assert result.stderr == (
        "note: no catalog was pushed to sqlite:///autumn.db; using the built-in example catalog"
        " (`autumn catalog show --example`); push yours with `autumn catalog push autumn.toml`\n"
    )
    shown = autumn("catalog", "show")
    assert shown.stdout.startswith(
        "Catalog: the built-in example catalog (nothing was pushed to sqlite:///autumn.db)"
    )
    assert autumn("catalog", "push", str(REPO / "autumn.toml")).returncode == 0
    after = autumn("track", "ann", "messages")
    assert after.returncode == 0 and after.stderr == ""
    assert autumn("catalog", "show").stdout.startswith("Catalog: pushed to sqlite:///autumn.db at ")


def test_an_empty_catalog_is_refused_unless_forced(autumn: Run, tmp_path: Path) -> None:
    (tmp_path / "empty.toml").write_text("# nothing yet\n")
    line = one_error_line(autumn("catalog", "push", "empty.toml"))
    assert line == (
        "error: empty_catalog: empty.toml defines no feature and no product; pushing it would"
        " leave sqlite:///autumn.db with nothing to sell (pass --force to push it anyway)"
    )
    assert not (tmp_path / "autumn.db").exists()
    forced = autumn("catalog", "push", "empty.toml", "--force")
    assert forced.returncode == 0
    assert forced.stdout == "catalog pushed to sqlite:///autumn.db: 0 features, 0 products\n"


def test_a_push_that_drops_what_customers_hold_is_refused_with_a_listing(
    autumn: Run, tmp_path: Path
) -> None:
    # given customers holding pro (and its sso) and enterprise
    assert autumn("catalog", "push", str(REPO / "autumn.toml")).returncode == 0
    for who, product in (("ann", "pro"), ("bea", "pro"), ("cy", "enterprise")):
        assert autumn("attach", who, product, "--create").returncode == 0
    # when a catalog without pro and without sso is pushed
    smaller = example_catalog()
    kept = [p for p in smaller.products if p.id not in ("pro", "enterprise")]
    features = [f for f in smaller.features if f.id != "sso"]
    (tmp_path / "smaller.toml").write_text(Catalog(features, kept).to_toml())
    line = one_error_line(autumn("catalog", "push", "smaller.toml"))
    # then it is refused, listing what would be dropped and who holds it
    assert line == (
        "error: catalog_drops_holdings: smaller.toml drops what customers still hold:"
        " feature 'sso' (3 customers: ann, bea, cy); product 'enterprise' (1 customer: cy);"
        " product 'pro' (2 customers: ann, bea); pass --force to push it anyway"
    )
    assert "pushed to" in autumn("catalog", "show").stdout
    assert "\n pro  " in autumn("catalog", "show").stdout
    # and --force pushes it, repeating the listing as a warning
    forced = autumn("catalog", "push", "smaller.toml", "--force")
    assert forced.returncode == 0
    assert forced.stderr.startswith("warning: pushed over holdings: feature 'sso' (3 customers")
    assert "\n pro  " not in autumn("catalog", "show").stdout
