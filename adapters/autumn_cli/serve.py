"""``autumn serve``: the dashboard at ``/`` (and the HTTP API at ``/v1`` when installed)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from autumn_cli import delivery
from autumn_cli.engine import database_url, engine, redacted
from autumn_core import Autumn, InvalidRequest

#: Comma-separated secret keys the ``/v1`` API accepts (``Authorization: Bearer <key>``).
SECRET_KEYS_ENV = "AUTUMN_SECRET_KEYS"
SECRET_KEY_ENV = "AUTUMN_SECRET_KEY"


def build_app(billing: Autumn, *, password: str | None = None) -> Any:
    """The served ASGI app: the dashboard at ``/``; the wire API at ``/v1`` if installed."""
    # The web adapters are found by name, so the CLI imports no other adapter (ARCHITECTURE.md).
    try:
        from starlette.applications import Starlette
        from starlette.routing import Mount

        dashboard = importlib.import_module("autumn_dashboard").dashboard
    except ImportError as exc:
        raise InvalidRequest(
            f"autumn serve needs the web extra: pip install 'autumn-embedded[web]' ({exc.name})"
        ) from None
    routes = [Mount("/", dashboard(billing, password))]
    keys = [k for k in os.environ.get(SECRET_KEYS_ENV, "").split(",") if k]
    keys += [k for k in [os.environ.get(SECRET_KEY_ENV, "")] if k]
    with contextlib.suppress(ImportError):
        wire = importlib.import_module("autumn_wire")
        if keys:
            routes.insert(0, Mount("/v1", wire.api(billing, secret_keys=keys)))
        else:
            # The API refuses to run without a key; the dashboard is still useful alone.
            print(
                f"note: the /v1 API is off: set {SECRET_KEY_ENV} (or {SECRET_KEYS_ENV}, comma-"
                "separated) to serve it",
                file=sys.stderr,
            )
    return Starlette(routes=routes)


def serve(args: argparse.Namespace, engine: Callable[[argparse.Namespace], Autumn]) -> None:
    import uvicorn

    if not 0 < args.port < 65536:
        raise InvalidRequest(f"--port must be in 1..65535, got {args.port}")
    with engine(args) as billing:
        app = build_app(billing)
        deliverer = delivery.from_env(billing)
        print(
            f"autumn dashboard on http://{args.host}:{args.port}/ ({redacted(database_url(args))})",
            flush=True,
        )
        if deliverer is not None:
            deliverer.start()
        try:
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        finally:
            if deliverer is not None:
                deliverer.stop()


def register(commands: Any) -> None:
    """Add ``autumn serve`` to the ``autumn`` subcommands."""
    p = commands.add(
        "serve",
        _run,
        help="run the dashboard (bound to 127.0.0.1 unless --host says otherwise)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")


def _run(args: argparse.Namespace) -> None:
    serve(args, lambda a: engine(a, read=False))
