"""Fixtures for the Stripe gateway tests: a real localstripe server, gateways, webhook sinks.

The session fixture starts localstripe (``localstripe_server.py``: loopback only, kernel-chosen
port, no shared pickle in /tmp) as a subprocess and kills it at the end. If it cannot start the
tests FAIL: a gateway that was never exercised must not look green.
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe

from autumn_stripe import StripeGateway

HERE = Path(__file__).parent
API_KEY = "sk_test_autumn_localstripe"
WEBHOOK_SECRET = "whsec_autumn_test_secret"
START_TIMEOUT = 20.0


class LocalStripe:
    """A running localstripe: its base URL and a way to empty it."""

    def __init__(self, base: str, proc: subprocess.Popen[str]) -> None:
        self.base = base
        self.proc = proc
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only: never through an environment proxy

    def flush(self) -> None:
        self.session.delete(self.base + "/_config/data", timeout=5).raise_for_status()

    def register_webhook(self, name: str, url: str, secret: str) -> None:
        r = self.session.post(
            f"{self.base}/_config/webhooks/{name}", data={"url": url, "secret": secret}, timeout=5
        )
        r.raise_for_status()

    def client(self) -> stripe.StripeClient:
        http_client = stripe.RequestsClient(session=self.session)
        return stripe.StripeClient(
            API_KEY,
            base_addresses={"api": self.base},
            max_network_retries=0,
            http_client=http_client,
        )


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "localstripe_server.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = _read_port_line(proc)
        base = f"http://127.0.0.1:{int(line.split()[1])}"
        server = LocalStripe(base, proc)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                server.session.get(base + "/v1/customers", auth=(API_KEY, ""), timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"localstripe did not answer on {base}: {_stderr(proc)}")
                time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_port_line(proc: subprocess.Popen[str]) -> str:
    result: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout
    threading.Thread(target=lambda: result.put(out.readline()), daemon=True).start()
    try:
        line = result.get(timeout=START_TIMEOUT)
    except queue.Empty:
        line = ""
    if not line.startswith("PORT "):
        proc.kill()
        pytest.fail(f"localstripe could not start: {line!r} {_stderr(proc)}")
    return line


def _stderr(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None or proc.stderr is None:
        return ""
    return proc.stderr.read()[-2000:]


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in these tests may resolve (let alone reach) a non-loopback host."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in _LOOPBACK:
            raise OSError(f"test tried to reach {name!r}: only loopback is allowed")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture
def ls(localstripe: LocalStripe) -> Iterator[LocalStripe]:
    """The shared server, emptied before each test."""
    localstripe.flush()
    yield localstripe


@pytest.fixture
def client(ls: LocalStripe) -> stripe.StripeClient:
    return ls.client()


@pytest.fixture
def gateway(client: stripe.StripeClient) -> StripeGateway:
    # The switches for what localstripe lacks (proration_behavior, /finalize, sane one-off
    # invoices); the real-Stripe paths are covered by test_recorded.py.
    return StripeGateway.for_localstripe(client, webhook_secret=WEBHOOK_SECRET)


class WebhookSink:
    """A tiny loopback HTTP server that queues every POST it receives (body + headers)."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink.lock:
                    sink.received.append((body, dict(self.headers.items())))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/stripe"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(
        self, event_type: str, customer: str, timeout: float = 10.0
    ) -> tuple[bytes, dict[str, str]]:
        """The first delivery of ``event_type`` about ``customer``.

        localstripe delivers about 1 s after the call, to the endpoints registered *then*, so
        events of earlier tests can arrive too: the customer tells them apart.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for body, headers in self.received:
                    event = json.loads(body)
                    if (
                        event.get("type") == event_type
                        and event["data"]["object"].get("customer") == customer
                    ):
                        return body, headers
            time.sleep(0.05)
        raise AssertionError(f"no {event_type} webhook within {timeout} s")

    def wait_for_all(
        self, event_type: str, customer: str, count: int, timeout: float = 10.0
    ) -> list[tuple[bytes, dict[str, str]]]:
        """The first ``count`` deliveries of ``event_type`` about ``customer``, in arrival order."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [
                    (body, headers)
                    for body, headers in self.received
                    if (event := json.loads(body)).get("type") == event_type
                    and event["data"]["object"].get("customer") == customer
                ]
            if len(found) >= count:
                return found[:count]
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} {event_type} webhooks within {timeout} s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.close()
