"""Replay recorded Stripe responses through the SDK's HTTP client hook.

For endpoints localstripe lacks (Checkout Sessions, the billing portal, ``proration_behavior``,
``/finalize``, one-off invoices for a customer without a subscription) the tests give
``stripe.StripeClient(http_client=ReplayClient(...))``: the SDK builds and sends real requests
(URL, form encoding, headers, idempotency key), and this client answers each one from a JSON file
in ``tests/stripe/recordings/``. Every request is kept, so the tests assert what the gateway
actually sent. An unexpected request fails loudly instead of reaching the network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

RECORDINGS = Path(__file__).parent / "recordings"


class Sent:
    """One request the SDK made."""

    def __init__(self, method: str, url: str, headers: Mapping[str, str], body: str | None):
        self.method = method.upper()
        parts = urlsplit(url)
        self.path = parts.path
        self.query = dict(parse_qsl(parts.query))
        self.headers = dict(headers)
        self.form = dict(parse_qsl(body or "", keep_blank_values=True))

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("Idempotency-Key")


class ReplayClient(stripe.HTTPClient):
    """Answers ``(METHOD, path)`` from recordings, in order when a route is scripted twice."""

    name = "replay"

    def __init__(self, script: list[tuple[str, str, str]]) -> None:
        """``script``: ``(method, path, recording file name)`` in the order they are expected."""
        super().__init__()
        self.script = list(script)
        self.sent: list[Sent] = []

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        sent = Sent(method, url, headers or {}, post_data)
        self.sent.append(sent)
        for i, (m, path, name) in enumerate(self.script):
            if m == sent.method and path == sent.path:
                del self.script[i]
                recording = json.loads((RECORDINGS / name).read_text())
                return (
                    json.dumps(recording["body"]),
                    int(recording.get("status", 200)),
                    {"Request-Id": recording.get("request_id", "req_replay")},
                )
        raise AssertionError(f"unrecorded request {sent.method} {sent.path}")

    def close(self) -> None:
        pass


def replay_client(script: list[tuple[str, str, str]]) -> tuple[stripe.StripeClient, ReplayClient]:
    http = ReplayClient(script)
    client = stripe.StripeClient(
        "sk_test_replay",
        base_addresses={"api": "http://replay.invalid"},
        max_network_retries=0,
        http_client=http,
    )
    return client, http


class HybridClient(ReplayClient):
    """Scripted routes from recordings (reusable), everything else to a real server.

    Used end to end: localstripe serves what it can, recordings the endpoints it lacks
    (Checkout Sessions), all through one ``StripeClient``.
    """

    name = "hybrid"

    def __init__(self, real: stripe.HTTPClient, routes: dict[tuple[str, str], str]) -> None:
        super().__init__([])
        self.real = real
        self.routes = routes

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        sent = Sent(method, url, headers or {}, post_data)
        name = self.routes.get((sent.method, sent.path))
        if name is None:
            return self.real.request(method, url, headers, post_data)
        self.sent.append(sent)
        recording = json.loads((RECORDINGS / name).read_text())
        return json.dumps(recording["body"]), int(recording.get("status", 200)), {}
