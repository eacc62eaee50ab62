"""``billing.webhooks``: outgoing events to in-process subscribers and signed HTTP webhooks,
delivered from the store's outbox (docs/rules.md EO1-EO5)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from autumn_core.app.context import Context
from autumn_core.app.outbox import deliver
from autumn_core.errors import InvalidRequest
from autumn_core.outbound import OutboxEntry
from autumn_core.subscribers import (
    DeliveryPolicy,
    DeliveryReport,
    Handler,
    Subscription,
    WebhookEndpoint,
)

_STATUSES = ("pending", "delivered", "dead")


class Webhooks:
    """``billing.webhooks``: who receives the engine's events, and their delivery.

    Every state change an application cares about is an event written to the store's outbox in
    the transaction of the change (EO2). ``deliver()`` hands the due events to every subscriber,
    at least once, retrying failures with exponential backoff (EO4). ``process_due()`` delivers
    after its own work, and ``autumn serve`` runs a deliverer in the background.

    Example:
        ```python
        billing.webhooks.subscribe(lambda event: print(event.type, event.data), name="log")
        billing.webhooks.add_endpoint("https://example.com/hooks", secret="whsec_...")
        billing.attach("user-1", "pro")
        billing.webhooks.deliver()   # or billing.process_due(), or `autumn serve`
        ```
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._subs: dict[str, Subscription] = {}
        self._lock = threading.Lock()
        self.policy = DeliveryPolicy()
        #: How long before a trial ends ``process_due`` emits ``customer.trial_ending`` (EO6).
        self.trial_notice = timedelta(days=3)

    def subscribe(
        self, handler: Handler, *, name: str | None = None, types: Iterable[str] | None = None
    ) -> Subscription:
        """Call ``handler(event)`` for every event (of ``types``, when given). ``name`` (by
        default the handler's qualified name) must stay the same across restarts: deliveries
        are remembered under it. Subscribing a name again replaces its handler.

        Example:
            ```python
            def on_event(event):
                if event.type == "customer.products.updated":
                    sync_plan(event.customer_id, event.data)
            billing.webhooks.subscribe(on_event, types=["customer.products.updated"])
            ```
        """
        if name is None:
            name = getattr(handler, "__qualname__", None) or repr(handler)
            name = f"{getattr(handler, '__module__', '')}.{name}".lstrip(".")
        sub = Subscription(name=name, handler=handler, types=types)
        with self._lock:
            self._subs[sub.name] = sub
        return sub

    def add_endpoint(
        self,
        url: str,
        *,
        secret: str,
        name: str | None = None,
        types: Iterable[str] | None = None,
        timeout: float = 10.0,
    ) -> Subscription:
        """POST every event (of ``types``) to ``url`` as JSON, signed with ``secret`` in the
        ``Autumn-Signature`` header (EO5). ``name`` defaults to the url.

        Example:
            ```python
            billing.webhooks.add_endpoint("https://example.com/hooks", secret=os.environ["S"])
            # the receiver:
            autumn_core.signing.verify(body, headers["Autumn-Signature"], S, now=time.time)
            ```
        """
        endpoint = WebhookEndpoint(url, secret=secret, timeout=timeout, clock=self._ctx.clock)
        return self.subscribe(endpoint, name=name or url, types=types)

    def unsubscribe(self, name: str) -> None:
        """Stop delivering to ``name``; events it has not had stay in the outbox for the others."""
        with self._lock:
            if self._subs.pop(name, None) is None:
                raise InvalidRequest(f"no subscriber named {name!r}")

    @property
    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return list(self._subs.values())

    def deliver(self, *, limit: int = 100) -> DeliveryReport:
        """Deliver the events due now (at most ``limit``); failures are retried by a later
        call once their backoff has passed. Without subscribers, it leaves every event pending.

        Example:
            ```python
            report = billing.webhooks.deliver()
            print(report.delivered, report.retrying, report.dead)
            ```
        """
        _positive(limit)
        return deliver(self._ctx, self.subscriptions, self.policy, limit=limit)

    def list(
        self, *, status: str | None = None, limit: int = 100, starting_after: str | None = None
    ) -> list[OutboxEntry]:
        """The outbox, oldest event first: every event with its delivery state.

        Example:
            ```python
            for entry in billing.webhooks.list(status="dead"):
                print(entry.event.type, entry.attempts, entry.last_error)
            ```
        """
        if status is not None and status not in _STATUSES:
            raise InvalidRequest(f"status must be one of {_STATUSES}, got {status!r}")
        _positive(limit)
        if limit > 1000:
            raise InvalidRequest(f"limit must be at most 1000, got {limit!r}")

        def body(tx: Any) -> list[OutboxEntry]:
            entries: list[OutboxEntry] = tx.list_outbox(
                status=status, limit=limit, starting_after=starting_after
            )
            return entries

        return self._ctx.run(body, write=False)

    def purge(self, *, older_than: timedelta = timedelta(days=30), limit: int = 10_000) -> int:
        """Delete delivered and dead entries settled more than ``older_than`` ago (at most
        ``limit``); pending ones are never deleted. Returns how many went.

        Example:
            ```python
            billing.webhooks.purge(older_than=timedelta(days=7))   # e.g. from a daily job
            ```
        """
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidRequest(f"older_than must be a non-negative timedelta, got {older_than!r}")
        _positive(limit)
        before = self._ctx.clock.now() - older_than
        purged: int = self._ctx.run(lambda tx: tx.purge_outbox(before, limit), write=True)
        return purged


def _positive(limit: Any) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidRequest(f"limit must be a positive integer, got {limit!r}")
