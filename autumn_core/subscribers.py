"""Who receives outgoing events (docs/rules.md EO3, EO5): a ``Subscription`` names a handler and
the event types it wants; ``WebhookEndpoint`` is the handler that POSTs a signed event to a URL.

A handler is any callable taking an ``OutboundEvent``; it succeeds by returning and fails by
raising. The outbox calls it again later when it fails (EO4), so a handler must be idempotent
on ``event.id``.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import attrs

from autumn_core.clock import Clock, SystemClock
from autumn_core.errors import InvalidRequest
from autumn_core.outbound import EVENT_TYPES, OutboundEvent
from autumn_core.signing import AUTUMN_SIGNATURE_HEADER, signature_header
from autumn_core.values import check_id

Handler = Callable[[OutboundEvent], Any]


class DeliveryFailed(Exception):
    """A webhook endpoint did not take the event (no answer, a timeout, a non-2xx status)."""


def _types(value: Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    types = frozenset(value)
    unknown = sorted(types - set(EVENT_TYPES))
    if unknown:
        raise InvalidRequest(f"unknown event types {unknown}; expected some of {EVENT_TYPES}")
    return types


@attrs.frozen
class Subscription:
    """A named receiver of outgoing events. The name is what the outbox remembers a delivery
    under, so it must stay the same across restarts for at-least-once delivery to hold."""

    name: str
    handler: Handler
    #: The event types it receives; None for all.
    types: frozenset[str] | None = attrs.field(default=None, converter=_types)

    def __attrs_post_init__(self) -> None:
        check_id(self.name, "subscriber name")
        if not callable(self.handler):
            raise InvalidRequest(f"a subscriber's handler must be callable, got {self.handler!r}")

    def wants(self, event_type: str) -> bool:
        return self.types is None or event_type in self.types


@attrs.frozen
class DeliveryPolicy:
    """Retries and backoff: the n-th failed round waits ``first_retry * factor**(n-1)``, at
    most ``max_delay``; after ``max_attempts`` rounds the entry is dead."""

    first_retry: timedelta = timedelta(seconds=10)
    factor: int = 2
    max_delay: timedelta = timedelta(hours=6)
    max_attempts: int = 12
    #: How long a deliverer owns the entries it took (longer than a round of sends).
    lease: timedelta = timedelta(minutes=5)

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1 or self.factor < 1:
            raise InvalidRequest("max_attempts and factor must be at least 1")
        if self.first_retry <= timedelta(0) or self.lease <= timedelta(0):
            raise InvalidRequest("first_retry and lease must be positive durations")

    def delay(self, attempts: int) -> timedelta:
        """The wait after ``attempts`` failed rounds."""
        delay: timedelta = self.first_retry * int(self.factor ** (attempts - 1))
        return min(delay, self.max_delay)


@attrs.frozen
class DeliveryReport:
    """What one ``deliver`` call did: entries delivered to every subscriber, entries that will
    be tried again, entries given up on (dead)."""

    delivered: int = 0
    retrying: int = 0
    dead: int = 0


class WebhookEndpoint:
    """POSTs each event's JSON body to ``url``, signed with ``secret`` (EO5).

    Headers: ``Content-Type: application/json``, ``Autumn-Event-Id``, ``Autumn-Event-Type`` and
    ``Autumn-Signature: t=<unix>,v1=<hex hmac-sha256(secret, "<t>.<body>")>``, verified with
    ``autumn_core.signing.verify``. Any 2xx answer is a delivery; anything else (a refused
    connection, ``timeout`` seconds without an answer, another status) raises
    ``DeliveryFailed`` and the outbox tries again later.
    """

    def __init__(
        self, url: str, *, secret: str, timeout: float = 10.0, clock: Clock | None = None
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidRequest(f"a webhook url must be http(s)://..., got {url!r}")
        if not isinstance(secret, str) or not secret:
            raise InvalidRequest("a webhook endpoint needs a non-empty signing secret")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidRequest(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url = url
        self._secret = secret
        self.timeout = float(timeout)
        self._clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"WebhookEndpoint({self.url!r})"  # never the secret

    def request(self, event: OutboundEvent) -> urllib.request.Request:
        """The signed request for ``event`` (signed at the clock's current second)."""
        body = event.body()
        timestamp = int(self._clock.now().timestamp())
        return urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "autumn-embedded-webhooks",
                "Autumn-Event-Id": event.id,
                "Autumn-Event-Type": event.type,
                AUTUMN_SIGNATURE_HEADER: signature_header(body, self._secret, timestamp),
            },
        )

    def __call__(self, event: OutboundEvent) -> None:
        try:
            with urllib.request.urlopen(self.request(event), timeout=self.timeout) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"{self.url} answered {exc.code}") from None
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad answer
            raise DeliveryFailed(f"{self.url} unreachable: {exc}") from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"{self.url} answered {status}")


__all__ = [
    "DeliveryFailed",
    "DeliveryPolicy",
    "DeliveryReport",
    "Handler",
    "Subscription",
    "WebhookEndpoint",
]
