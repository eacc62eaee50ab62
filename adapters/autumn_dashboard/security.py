"""Sign-in, CSRF tokens, slowed-down failed sign-ins and the security headers."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: No inline script, no inline style, nothing from another origin; SVG is markup, not script.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """Adds ``HEADERS`` to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in HEADERS.items():
                    if k not in headers:
                        headers[k] = v
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (also before sign-in, for the sign-in form)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, sent: object) -> bool:
    token = request.session.get("csrf")
    return (
        isinstance(token, str)
        and isinstance(sent, str)
        and hmac.compare_digest(token.encode(), sent.encode())
    )


def signed_in(request: Request) -> bool:
    return request.session.get("signed_in") is True


class Throttle:
    """Failed sign-ins from one client wait longer each time (doubling, capped), without
    blocking other requests; a success forgets that client's failures."""

    def __init__(self, base_delay: float, max_delay: float = 8.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._fails: dict[str, tuple[int, float]] = {}

    async def failed(self, client: str) -> None:
        await asyncio.sleep(self.record_failure(client))

    def record_failure(self, client: str) -> float:
        """Count a failed sign-in from ``client``; return how long its answer waits."""
        count, _ = self._fails.get(client, (0, 0.0))
        count += 1
        self._fails[client] = (count, time.monotonic())
        if len(self._fails) > 10_000:  # forget the oldest clients, so memory stays bounded
            for key, _v in sorted(self._fails.items(), key=lambda kv: kv[1][1])[:5_000]:
                del self._fails[key]
        return float(min(self.base_delay * 2 ** (count - 1), self.max_delay))

    def succeeded(self, client: str) -> None:
        self._fails.pop(client, None)


def password_matches(expected: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())
