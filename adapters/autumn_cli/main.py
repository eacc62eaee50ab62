"""The ``autumn`` console script.

Errors print one line (``error: <code>: <message>``) and exit with status 1; never a traceback
(``AUTUMN_DEBUG=1`` lets an unexpected one through, for a bug report).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Sequence

from autumn_cli.engine import located
from autumn_cli.registry import Commands, HelpFormatter, Parser, common_options
from autumn_core import AutumnError, StoreError, __version__

#: The subcommands, each declared by a ``register(commands)`` function in its own module.
#: To add one, write in your module (e.g. adapters/autumn_cli/serve.py)::
#:
#:     def register(commands: Commands) -> None:
#:         p = commands.add("serve", run, help="serve the HTTP API")   # run(args) -> None
#:         p.add_argument("--port", type=int, default=8080, help="... (default: %(default)s)")
#:
#: and add its "module:function" on one line below. Modules are imported when the command line
#: is built, so import heavy dependencies inside ``run``, not at the top of the module.
SUBCOMMANDS: tuple[str, ...] = (
    "autumn_cli.demo_cmd:register",
    "autumn_cli.catalog_cmd:register",
    "autumn_cli.commands:register",
    "autumn_cli.test_catalog:register",
    "autumn_cli.serve:register",
)

#: Quoted values longer than this are shortened in error lines (a runaway id must not flood
#: the terminal); the head and tail stay, so the value is still recognisable.
LONGEST_QUOTED = 48


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = Parser(
        prog="autumn",
        description="The autumn-embedded billing engine on the command line.\n"
        "Every command works on one database: --db URL, else $AUTUMN_DB, else"
        " sqlite:///autumn.db.",
        parents=[common],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"autumn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = Commands(sub, common)
    for target in SUBCOMMANDS:
        module, _, func = target.partition(":")
        getattr(importlib.import_module(module), func)(commands)
    return parser


def shorten(text: str) -> str:
    """Shorten every long quoted value in an error message."""

    def cut(m: re.Match[str]) -> str:
        quote, body = m.group(1), m.group(2)
        if len(body) <= LONGEST_QUOTED:
            return m.group(0)
        return f"{quote}{body[:24]}...{body[-12:]}{quote} ({len(body)} characters)"

    return re.sub(r"(['\"])(.*?)\1", cut, text)


def _one_line(text: str) -> str:
    return " ".join(shorten(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    # Driver and pool warnings (a PostgreSQL pool retrying, say) would print many lines of their
    # own; the error that ends the command says it once.
    logging.disable(logging.WARNING)
    try:
        parser = build_parser()
    except Exception as exc:  # a subcommand module failed to import: still one line
        if os.environ.get("AUTUMN_DEBUG"):
            raise
        print(f"error: unexpected: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except AutumnError as exc:
        message = located(exc, args) if isinstance(exc, StoreError) else exc.message
        print(f"error: {exc.code}: {_one_line(message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("AUTUMN_DEBUG"):
            raise
        print(
            f"error: unexpected: {type(exc).__name__}: {_one_line(str(exc))}"
            " (AUTUMN_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
