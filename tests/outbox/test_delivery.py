"""Delivering the outbox to in-process subscribers (docs/rules.md EO3, EO4), on every store:
at least once, oldest first, retried with exponential backoff in the engine's time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from autumn_core import Autumn, DeliveryPolicy, DeliveryReport, InvalidRequest, ManualClock
from autumn_core.outbound import OutboundEvent


class Flaky:
    """A subscriber that fails its first ``failures`` calls, then records what it receives."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        self.received: list[OutboundEvent] = []

    def __call__(self, event: OutboundEvent) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("receiver unavailable")
        self.received.append(event)


def test_events_are_kept_until_someone_subscribes(billing: Autumn) -> None:
    # given events written while nobody listens
    billing.customers.create("ann")
    billing.customers.create("bob")
    assert billing.webhooks.deliver() == DeliveryReport()
    # when a subscriber arrives and delivery runs
    sub = Flaky()
    billing.webhooks.subscribe(sub, name="app")
    report = billing.webhooks.deliver()
    # then it gets both, oldest first, each once, and they are marked delivered
    assert report == DeliveryReport(delivered=2)
    assert [e.customer_id for e in sub.received] == ["ann", "bob"]
    assert [(x.status, x.delivered_to) for x in billing.webhooks.list()] == [
        ("delivered", ("app",)),
        ("delivered", ("app",)),
    ]
    assert billing.webhooks.deliver() == DeliveryReport()
    assert sub.calls == 2


def test_a_failing_subscriber_is_retried_with_exponential_backoff(
    billing: Autumn, clock: ManualClock
) -> None:
    # given a subscriber that fails three times
    sub = Flaky(failures=3)
    billing.webhooks.subscribe(sub, name="app")
    billing.customers.create("ann")
    # when delivery runs now, and as the clock moves
    assert billing.webhooks.deliver() == DeliveryReport(retrying=1)
    [entry] = billing.webhooks.list()
    assert entry.attempts == 1 and entry.last_error == "app: receiver unavailable"
    assert entry.next_attempt_at == clock.now() + timedelta(seconds=10)
    clock.advance(seconds=9)
    assert billing.webhooks.deliver() == DeliveryReport()  # not due yet
    clock.advance(seconds=1)
    assert billing.webhooks.deliver() == DeliveryReport(retrying=1)  # 2nd failure: wait 20 s
    clock.advance(seconds=19)
    assert billing.webhooks.deliver() == DeliveryReport()
    clock.advance(seconds=1)
    assert billing.webhooks.deliver() == DeliveryReport(retrying=1)  # 3rd failure: wait 40 s
    clock.advance(seconds=40)
    # then the fourth round delivers it, with the same id as every try
    assert billing.webhooks.deliver() == DeliveryReport(delivered=1)
    assert sub.calls == 4
    [event] = sub.received
    assert event.id == entry.id
    [done] = billing.webhooks.list()
    assert (done.status, done.attempts, done.last_error) == ("delivered", 4, None)


def test_after_the_last_attempt_the_entry_is_dead_and_kept(
    billing: Autumn, clock: ManualClock
) -> None:
    billing.webhooks.policy = DeliveryPolicy(max_attempts=2)
    billing.webhooks.subscribe(Flaky(failures=5), name="app")
    billing.customers.create("ann")
    assert billing.webhooks.deliver() == DeliveryReport(retrying=1)
    clock.advance(hours=1)
    assert billing.webhooks.deliver() == DeliveryReport(dead=1)
    clock.advance(days=1)
    assert billing.webhooks.deliver() == DeliveryReport()
    [dead] = billing.webhooks.list(status="dead")
    assert (dead.attempts, dead.failed_for) == (2, ("app",))


def test_a_subscriber_that_succeeded_is_not_called_again_when_another_fails(
    billing: Autumn, clock: ManualClock
) -> None:
    good, bad = Flaky(), Flaky(failures=1)
    billing.webhooks.subscribe(good, name="good")
    billing.webhooks.subscribe(bad, name="bad")
    billing.customers.create("ann")
    billing.webhooks.deliver()
    clock.advance(minutes=1)
    assert billing.webhooks.deliver() == DeliveryReport(delivered=1)
    assert (good.calls, bad.calls) == (1, 2)
    assert billing.webhooks.list()[0].delivered_to == ("good", "bad")


def test_a_subscriber_gets_only_the_types_it_asked_for(billing: Autumn) -> None:
    invoices = Flaky()
    billing.webhooks.subscribe(invoices, name="invoices", types=["invoice.paid"])
    billing.customers.create("ann")
    billing.attach("ann", "pro")
    assert billing.webhooks.deliver() == DeliveryReport(delivered=4)
    assert [e.type for e in invoices.received] == ["invoice.paid"]


def test_process_due_delivers(billing: Autumn) -> None:
    sub = Flaky()
    billing.webhooks.subscribe(sub, name="app")
    billing.customers.create("ann")
    billing.process_due()
    assert [e.customer_id for e in sub.received] == ["ann"]


def test_bad_subscriptions_are_refused(billing: Autumn) -> None:
    with pytest.raises(InvalidRequest, match="unknown event types"):
        billing.webhooks.subscribe(Flaky(), name="x", types=["invoice.pay"])
    with pytest.raises(InvalidRequest, match="subscriber name"):
        billing.webhooks.subscribe(Flaky(), name="has space")
    with pytest.raises(InvalidRequest, match="http"):
        billing.webhooks.add_endpoint("ftp://x", secret="s")
    with pytest.raises(InvalidRequest, match="secret"):
        billing.webhooks.add_endpoint("http://127.0.0.1:9/", secret="")
    with pytest.raises(InvalidRequest, match="no subscriber named"):
        billing.webhooks.unsubscribe("nobody")
    assert billing.webhooks.subscriptions == []


def test_the_async_facade_delivers_too(billing: Autumn) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from autumn_core import AsyncAutumn

    sub = Flaky()

    async def run() -> DeliveryReport:
        async_billing = AsyncAutumn(billing, inline=True)
        async_billing.webhooks.subscribe(sub, name="app")
        await async_billing.customers.create("ann")
        return await async_billing.webhooks.deliver()

    # A thread of its own: another test's event loop may still be set on this one.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, run()).result() == DeliveryReport(delivered=1)
    assert [e.customer_id for e in sub.received] == ["ann"]


def test_purge_keeps_what_is_pending_and_recent(billing: Autumn, clock: ManualClock) -> None:
    billing.customers.create("ann")
    billing.webhooks.subscribe(Flaky(), name="app")
    billing.webhooks.deliver()
    billing.customers.create("bob")  # pending: nobody delivered it yet
    clock.advance(days=31)
    assert billing.webhooks.purge() == 1
    assert [(e.event.customer_id, e.status) for e in billing.webhooks.list()] == [
        ("bob", "pending")
    ]
    with pytest.raises(InvalidRequest, match="older_than"):
        billing.webhooks.purge(older_than=timedelta(days=-1))
