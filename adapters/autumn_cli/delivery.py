"""The webhook deliverer ``autumn serve`` runs beside the server (docs/rules.md EO3-EO5).

``AUTUMN_WEBHOOK_URLS`` (comma-separated) names the endpoints and ``AUTUMN_WEBHOOK_SECRET``
the signing secret; a background thread delivers the outbox every
``AUTUMN_WEBHOOK_INTERVAL`` seconds (default 2), and at once again while a round was full. The
outbox is in the store, so several servers on one database share the work (each entry is
leased by the deliverer that takes it) and a restarted server sends what a stopped one left.
"""

from __future__ import annotations

import os
import sys
import threading

from autumn_core import Autumn, AutumnError, InvalidRequest

URLS_ENV = "AUTUMN_WEBHOOK_URLS"
SECRET_ENV = "AUTUMN_WEBHOOK_SECRET"
INTERVAL_ENV = "AUTUMN_WEBHOOK_INTERVAL"
ROUND = 100


class Deliverer:
    """Delivers ``billing``'s outbox from a daemon thread until ``stop()``."""

    def __init__(self, billing: Autumn, interval: float) -> None:
        self._billing = billing
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="autumn-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = self._billing.webhooks.deliver(limit=ROUND)
            except AutumnError as exc:  # the store is busy or down: try again next round
                print(f"webhooks: delivery round failed: {exc}", file=sys.stderr, flush=True)
                report = None
            taken = 0 if report is None else report.delivered + report.retrying + report.dead
            if taken < ROUND:
                self._stop.wait(self._interval)


def from_env(billing: Autumn) -> Deliverer | None:
    """Register the endpoints named in the environment; a deliverer for them, or None."""
    urls = [u.strip() for u in os.environ.get(URLS_ENV, "").split(",") if u.strip()]
    if not urls:
        return None
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        raise InvalidRequest(f"{URLS_ENV} is set: set {SECRET_ENV} to the signing secret too")
    raw = os.environ.get(INTERVAL_ENV, "2")
    try:
        interval = float(raw)
    except ValueError:
        raise InvalidRequest(f"{INTERVAL_ENV} must be a number of seconds, got {raw!r}") from None
    if not interval > 0:
        raise InvalidRequest(f"{INTERVAL_ENV} must be positive, got {raw!r}")
    for url in urls:
        billing.webhooks.add_endpoint(url, secret=secret)
    return Deliverer(billing, interval)
