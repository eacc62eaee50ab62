"""How subcommands are declared: one ``register(commands)`` function per module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from autumn_cli.engine import DB_ENV, DEFAULT_DB, DEFAULT_TIMEOUT

Handler = Callable[[argparse.Namespace], None]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; option help states defaults itself."""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported on one line like every other error."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: usage: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand accepts before or after its name (``autumn --db X check`` and
    ``autumn check --db X``). SUPPRESS keeps a later, absent copy from erasing an earlier one."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"store URL: sqlite:///file.db, postgresql://user:pw@host/db, memory:// (default:"
        f" ${DB_ENV}, else {DEFAULT_DB})",
    )
    common.add_argument(
        "--catalog",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="catalog TOML to use for this command (default: the one pushed to the database,"
        " else the built-in example)",
    )
    common.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=argparse.SUPPRESS,
        help=f"how long to wait for a PostgreSQL connection (default: {DEFAULT_TIMEOUT:g})",
    )
    return common


class Commands:
    """The ``autumn`` subcommands being declared (or a group's, such as ``customers``)."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser) -> None:
        self._sub = sub
        self._common = common

    def add(
        self, name: str, handler: Handler, *, help: str, **kwargs: Any
    ) -> argparse.ArgumentParser:
        """Declare ``autumn NAME``, run by ``handler(args)``; returns its parser for options.

        The handler reads the database URL with ``autumn_cli.engine.database_url(args)`` and
        opens the engine with ``autumn_cli.engine.engine(args, read=...)``; an ``AutumnError``
        it raises is printed as one line.
        """
        kwargs.setdefault("description", help[:1].upper() + help[1:] + ".")
        p: argparse.ArgumentParser = self._sub.add_parser(
            name, help=help, parents=[self._common], formatter_class=HelpFormatter, **kwargs
        )
        p.set_defaults(fn=handler)
        return p

    def group(self, name: str, *, help: str) -> Commands:
        """Declare ``autumn NAME ACTION ...``; add the actions to the returned ``Commands``."""
        p = self._sub.add_parser(
            name,
            help=help,
            description=help[:1].upper() + help[1:] + ".",
            parents=[self._common],
            formatter_class=HelpFormatter,
        )
        sub = p.add_subparsers(dest=f"{name}_action", metavar="ACTION", required=True)
        return Commands(sub, self._common)
