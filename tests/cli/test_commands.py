"""The everyday commands, as a newcomer meets them."""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path

from autumn_cli.demo import example_catalog
from autumn_cli.engine import save_catalog
from autumn_cli.main import build_parser
from autumn_core import __version__
from autumn_core import open as open_billing
from tests.cli.conftest import AUTUMN, Run, one_error_line


def seeded(tmp_path: Path, customers: int) -> str:
    db = f"sqlite:///{tmp_path / 'autumn.db'}"
    with open_billing(db, catalog=example_catalog()) as billing:
        save_catalog(billing, example_catalog())
        for n in range(customers):
            billing.customers.create(f"c{n:04d}")
    return db


def rows(out: str) -> int:
    return len(re.findall(r"^ c\d{4} ", out, re.M))


def test_version_comes_from_the_package_metadata(autumn: Run) -> None:
    from importlib.metadata import version

    result = autumn("--version")
    assert result.returncode == 0
    assert (
        result.stdout.strip() == f"autumn {version('autumn-embedded')}" == f"autumn {__version__}"
    )


def test_the_database_option_goes_before_or_after_the_subcommand_or_in_the_environment(
    autumn: Run, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    db = f"sqlite:///{tmp_path / 'a' / 'x.db'}"
    assert autumn("--db", db, "track", "ann", "messages", "--create").returncode == 0
    assert autumn("customers", "show", "ann", "--db", db).returncode == 0
    assert autumn("customers", "show", "ann", env={"AUTUMN_DB": db}).returncode == 0
    # the default database was never created by any of these
    assert not (tmp_path / "autumn.db").exists()


def test_every_option_has_help_with_its_default() -> None:
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.option_strings and action.dest not in ("help", "version"):
                if not action.help or "default" not in action.help:
                    missing.append(f"{path} {action.option_strings[0]}")
            elif not action.option_strings and not action.help:
                missing.append(f"{path} {action.dest}")

    walk(build_parser(), "autumn")
    assert missing == []


def test_a_full_page_says_how_many_more_and_where_to_start(autumn: Run, tmp_path: Path) -> None:
    # given 250 customers
    seeded(tmp_path, 250)
    # when the first page is listed
    first = autumn("customers", "list")
    # then it shows 100 and says what follows
    assert first.returncode == 0, first.stderr
    assert rows(first.stdout) == 100
    assert first.stdout.rstrip().endswith("150 more; --starting-after c0099")
    second = autumn("customers", "list", "--limit", "120", "--starting-after", "c0099")
    assert rows(second.stdout) == 120 and " c0100 " in second.stdout and " c0219 " in second.stdout
    assert second.stdout.rstrip().endswith("30 more; --starting-after c0219")
    last = autumn("customers", "list", "--starting-after", "c0219")
    assert rows(last.stdout) == 30 and "more;" not in last.stdout
    everyone = autumn("customers", "list", "--all")
    assert rows(everyone.stdout) == 250 and "more;" not in everyone.stdout


def test_a_typo_does_not_create_a_customer(autumn: Run, tmp_path: Path) -> None:
    db = seeded(tmp_path, 1)
    for args in (
        ["check", "ghost", "messages"],
        ["track", "ghost", "messages"],
        ["attach", "ghost", "pro"],
    ):
        line = one_error_line(autumn(*args))
        assert line == (
            "error: customer_not_found: customer 'ghost' does not exist; pass --create to create it"
        )
    with open_billing(db, catalog=example_catalog()) as billing:
        assert [c.id for c in billing.customers.list()] == ["c0000"]
    assert autumn("check", "ghost", "messages", "--create").returncode == 0
    with open_billing(db, catalog=example_catalog()) as billing:
        assert billing.customers.get("ghost").id == "ghost"


def test_track_refuses_a_feature_and_an_event_together_and_takes_refunds(
    autumn: Run, tmp_path: Path
) -> None:
    seeded(tmp_path, 1)
    line = one_error_line(autumn("track", "c0000", "messages", "--event", "chat"))
    assert line == (
        "error: invalid_request: give a feature or --event, not both: feature 'messages' with"
        " event 'chat' is ambiguous"
    )
    assert autumn("track", "c0000", "messages", "--value", "30").returncode == 0
    refund = autumn("track", "c0000", "messages", "--value", "-10")
    assert refund.returncode == 0, refund.stderr
    assert " messages | -10     | 80 " in refund.stdout
    assert "negative values refund usage" in autumn("track", "--help").stdout


def test_booleans_are_yes_or_no_and_money_has_two_decimals(autumn: Run, tmp_path: Path) -> None:
    seeded(tmp_path, 1)
    attached = autumn("attach", "c0000", "enterprise")
    assert attached.returncode == 0, attached.stderr
    assert "| 500.00 " in attached.stdout
    check = autumn("check", "c0000", "sso")
    assert " yes     | sso     | -        | yes " in check.stdout
    shown = autumn("customers", "show", "c0000").stdout
    assert " sso      | yes       | yes " in shown
    assert "| paid   | 500.00 | Enterprise 500.00" in shown


def test_process_due_shows_progress_on_a_terminal_only_and_a_summary(
    autumn: Run, tmp_path: Path
) -> None:
    seeded(tmp_path, 3)
    piped = autumn("process-due")
    assert piped.returncode == 0
    assert piped.stdout == "0 customers updated (0 were due)\n" and piped.stderr == ""
    # on a terminal, a progress bar is drawn on stderr
    main, sub = pty.openpty()
    fcntl.ioctl(sub, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.run(
        [AUTUMN, "catalog", "push", "--force", str(Path(__file__).parents[2] / "autumn.toml")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=sub,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=True,
    )
    os.close(sub)
    drawn = os.read(main, 65536).decode()
    os.close(main)
    assert "checking holdings:" in drawn and "0/3 [" in drawn
    assert proc.stdout.decode().startswith("catalog pushed to sqlite:///autumn.db: 3 features")
