"""Opening the engine a command works on: which database, which catalog, and what to say when
either is missing or unusable."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from autumn_core import Autumn, AutumnError, Catalog, StoreError, open
from autumn_core.model import PendingRecord

DEFAULT_DB = "sqlite:///autumn.db"
DB_ENV = "AUTUMN_DB"
#: Seconds a PostgreSQL connection may take before the command gives up (libpq's
#: ``connect_timeout`` and the pool's wait), unless the URL or ``--timeout`` says otherwise.
DEFAULT_TIMEOUT = 5.0
#: The pushed catalog is kept in the store as a record of this kind, so every command (and
#: every process) on one database uses the same catalog.
CATALOG_RECORD = "cli.catalog"
#: Marks a database made by ``autumn demo`` (so a re-run may recreate it).
DEMO_RECORD = "cli.demo"


class CliError(AutumnError):
    """A refusal of the command line itself (the library was not asked)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def database_url(args: argparse.Namespace) -> str:
    """``--db`` (before or after the subcommand), else ``$AUTUMN_DB``, else the default."""
    return getattr(args, "db", None) or os.environ.get(DB_ENV) or DEFAULT_DB


def redacted(url: str) -> str:
    """The URL as it may be printed: the password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def sqlite_file(url: str) -> str | None:
    """The file behind a ``sqlite://`` URL (None for other stores and in-memory SQLite)."""
    # The SQLAlchemy convention the store follows: sqlite:///relative.db, sqlite:////abs.db.
    # A malformed URL is left for the store to refuse with its own message.
    if not url.startswith("sqlite:///") or "?" in url or "#" in url:
        return None
    path = url[len("sqlite:///") :]
    return None if path in ("", ":memory:") else path


def _store_options(url: str, args: argparse.Namespace) -> tuple[str, dict[str, float]]:
    if not url.startswith(("postgresql://", "postgres://")):
        return url, {}
    timeout = float(getattr(args, "timeout", None) or DEFAULT_TIMEOUT)
    if "connect_timeout=" not in url:
        # libpq's own default is to wait forever for a listener that never answers.
        url += ("&" if "?" in url else "?") + f"connect_timeout={max(1, round(timeout))}"
    return url, {"timeout": timeout}


def open_store(
    args: argparse.Namespace, catalog: Catalog, *, read: bool, clock: object = None
) -> Autumn:
    """The engine on the command's database; a read command never creates a database."""
    url = database_url(args)
    path = sqlite_file(url)
    if read and path is not None and not os.path.exists(path):
        raise CliError(
            "no_database",
            f"no database at {path} ({url}); create one with `autumn catalog push autumn.toml`"
            " or `autumn demo`, or pass --db / set AUTUMN_DB",
        )
    real_url, options = _store_options(url, args)
    try:
        return open(real_url, catalog=catalog, clock=clock, **options)  # type: ignore[arg-type]
    except ImportError as exc:
        if url.startswith(("postgresql://", "postgres://")):
            raise CliError(
                "missing_dependency",
                f"{redacted(url)} needs the PostgreSQL driver ({exc.name or 'psycopg'} is not"
                " installed): pip install 'autumn-embedded[postgres]'",
            ) from None
        raise


def located(exc: StoreError, args: argparse.Namespace) -> str:
    """A store error's message naming the database (without its password) and the reason."""
    url = database_url(args)
    message = exc.message
    if "readonly" in message or "read-only" in message:
        message += (
            "; the database is read-only: check the permissions of the file and its directory"
        )
    path = sqlite_file(url)
    if redacted(url) in message or (path and path in message):
        return message
    return f"{redacted(url)}: {message}"


def stored_catalog(url: str, billing: Autumn) -> tuple[Catalog, datetime] | None:
    """The catalog last pushed to the database, and when."""
    with billing.store.transaction(write=False) as tx:
        rec = tx.get_pending(CATALOG_RECORD)
    if rec is None:
        return None
    pushed = rec.created_at
    return Catalog.from_toml(str(rec.payload["toml"])), pushed


def save_catalog(billing: Autumn, catalog: Catalog) -> None:
    with billing.store.transaction() as tx:
        tx.put_pending(
            PendingRecord(
                CATALOG_RECORD, "", CATALOG_RECORD, {"toml": catalog.to_toml()}, datetime.now(UTC)
            )
        )


def engine(args: argparse.Namespace, *, read: bool) -> Autumn:
    """The engine with the catalog the command uses: ``--catalog FILE``, else the one pushed to
    the database, else the built-in example catalog (said on stderr, so it is never a surprise)."""
    if getattr(args, "catalog", None):
        return open_store(args, Catalog.from_file(args.catalog), read=read)
    probe = open_store(args, Catalog(), read=read)
    try:
        found = stored_catalog(database_url(args), probe)
    finally:
        probe.close()
    if found is not None:
        catalog = found[0]
    else:
        from autumn_cli.demo import example_catalog

        catalog = example_catalog()
        print(
            f"note: no catalog was pushed to {redacted(database_url(args))}; using the built-in"
            " example catalog (`autumn catalog show --example`); push yours with"
            " `autumn catalog push autumn.toml`",
            file=sys.stderr,
        )
    return open_store(args, catalog, read=read)


def require_customer(billing: Autumn, customer_id: str, create: bool) -> None:
    """Refuse an unknown customer id unless ``--create`` was given: a typo is not a sign-up."""
    if create:
        return
    from autumn_core import CustomerNotFound

    try:
        billing.customers.get(customer_id)
    except CustomerNotFound:
        raise CustomerNotFound(
            f"customer {customer_id!r} does not exist; pass --create to create it"
        ) from None
