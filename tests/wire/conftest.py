"""A real API server process per store, on a free loopback port, and clients pointed at it.

The server is the ``autumn serve`` console script (the dashboard at ``/``, the API at ``/v1``) in a
subprocess, exactly as a developer runs it; each test makes its own customers (unique ids), so one
server per store serves the module.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from autumn_sdk import Autumn as Sdk

from tests.pg_cluster import PgCluster

CATALOG = Path(__file__).with_name("catalog.toml")
SECRET = "am_sk_test_wire_suite"
#: The console script installed beside this interpreter (``pip install`` puts both in one bin/).
AUTUMN = str(Path(sys.executable).with_name("autumn"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], db: str) -> None:
        self.url = url
        self.proc = proc
        self.db = db

    def sdk(self, key: str = SECRET) -> Sdk:
        return Sdk(secret_key=key, server_url=self.url, fail_open=False)

    def post(self, route: str, body: object = None, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {SECRET}", **kw.pop("headers", {})}  # type: ignore[dict-item]
        return httpx.post(f"{self.url}/v1/{route}", json=body, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def start_server(db: str, *, extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "AUTUMN_SECRET_KEY": SECRET,
        "AUTUMN_DASHBOARD_PASSWORD": "wire-suite",
        **(extra_env or {}),
    }
    cmd = [AUTUMN, "--db", db, "serve", "--catalog", str(CATALOG), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"autumn serve exited: {out}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{url}/v1/features.list", timeout=2)
            return Server(url, proc, db)
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("autumn serve did not start within 60 s")
        time.sleep(0.1)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def wire_pg() -> Iterator[PgCluster]:
    cluster = PgCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


STORES = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=STORES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from serve(request, tmp_path_factory)


def serve(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on the store named by ``request.param``, stopped afterwards."""
    kind = request.param
    if kind == "memory":
        db = "memory://"
    elif kind == "sqlite":
        db = f"sqlite:///{tmp_path_factory.mktemp('wire')}/billing.db"
    else:
        cluster: PgCluster = request.getfixturevalue("wire_pg")
        db = cluster.create_database(f"wire_{uuid.uuid4().hex[:8]}")
    srv = start_server(db)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture
def sdk(server: Server) -> Sdk:
    return server.sdk()


def new_id(prefix: str = "cus") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
