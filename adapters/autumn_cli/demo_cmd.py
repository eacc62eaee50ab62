"""``autumn demo``: the example story, on a database only the demo may reset."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

from autumn_cli.demo import example_catalog, run_demo, story_start
from autumn_cli.engine import (
    DEMO_RECORD,
    CliError,
    database_url,
    open_store,
    redacted,
    save_catalog,
    sqlite_file,
)
from autumn_cli.registry import Commands
from autumn_core import Catalog, ManualClock
from autumn_core.model import PendingRecord


def register(commands: Commands) -> None:
    commands.add(
        "demo",
        demo,
        help="play a month of billing on the example catalog and print every customer it made",
        description="Play a month of billing on the example catalog, ending now, and print"
        " every customer it made.\nRe-running starts from a clean slate, but only on a database"
        " an earlier demo made: a database holding anyone else's data is refused.",
    )


def _demo_owns(args: argparse.Namespace) -> bool:
    with (
        open_store(args, Catalog(), read=True) as probe,
        probe.store.transaction(write=False) as tx,
    ):
        return tx.get_pending(DEMO_RECORD) is not None


def demo(args: argparse.Namespace) -> None:
    url = database_url(args)
    path = sqlite_file(url)
    if path is not None and os.path.exists(path):
        if not _demo_owns(args):
            raise CliError(
                "not_a_demo_database",
                f"{path} holds data the demo did not create; run the demo elsewhere with"
                " --db sqlite:///demo.db",
            )
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    # The story's last month ends at this moment: what it wrote is not overdue afterwards.
    end = datetime.now(UTC).replace(microsecond=0)
    clock = ManualClock(story_start(end))
    catalog = example_catalog()
    with open_store(args, catalog, read=False, clock=clock) as billing:
        with billing.store.transaction() as tx:
            tx.put_pending(PendingRecord(DEMO_RECORD, "", DEMO_RECORD, {}, clock.now()))
        save_catalog(billing, catalog)
        run_demo(billing, clock, end, print)
    print(f"(state kept in {redacted(url)}; its catalog is the example one: autumn catalog show)")
