"""``python -m autumn_wire``: the API served by uvicorn at ``/v1`` (for development, CI and
the SDK scenario tests). Secret keys come from ``AUTUMN_SECRET_KEY`` only (never argv, which
other users of the machine can read)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount

import autumn_core
from autumn_core import AsyncAutumn, Autumn, AutumnError, Catalog
from autumn_wire.app import api


def serve_app(billing: Autumn | AsyncAutumn, **kwargs: Any) -> Starlette:
    """``api(billing, **kwargs)`` mounted at ``/v1``: what Autumn's clients expect at an origin."""
    return Starlette(routes=[Mount("/v1", app=api(billing, **kwargs))])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autumn_wire", description=__doc__)
    parser.add_argument("--catalog", required=True, help="autumn.toml")
    parser.add_argument("--db", default="sqlite:///autumn.db", help="store URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--env", choices=("sandbox", "live"), default="sandbox")
    parser.add_argument("--workers", type=int, default=8, help="engine worker threads")
    args = parser.parse_args(argv)
    import uvicorn

    try:
        billing = autumn_core.open(args.db, catalog=Catalog.from_file(args.catalog))
        app = serve_app(billing, env=args.env, max_workers=args.workers)
    except AutumnError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
