"""Signed HTTP webhooks from the outbox to a real local receiver (docs/rules.md EO3-EO5), on
every store: the receiver down, slow, and answering 500, then up; every event arrives, with
the same id on every attempt, and its signature verifies."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from autumn_core import Autumn, DeliveryReport, ManualClock, WebhookSignatureError
from autumn_core.signing import verify

from .receiver import Receiver, closed_port_url

SECRET = "whsec_test_secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_delivery_survives_a_down_slow_and_failing_receiver(
    billing: Autumn, clock: ManualClock, receiver: Receiver
) -> None:
    # given two committed changes (ann's and bob's default products) and an endpoint that is down
    billing.customers.create("ann")
    billing.customers.create("bob")
    down = closed_port_url()
    billing.webhooks.add_endpoint(down, secret=SECRET, name="app", timeout=0.5)
    # when delivery runs against it: down
    assert billing.webhooks.deliver() == DeliveryReport(retrying=2)
    assert "unreachable" in (billing.webhooks.list()[0].last_error or "")
    # then against the real receiver (same subscriber name): answering 500, then too slow
    billing.webhooks.add_endpoint(receiver.url, secret=SECRET, name="app", timeout=0.5)
    receiver.mode = "fail"
    clock.advance(seconds=10)
    assert billing.webhooks.deliver() == DeliveryReport(retrying=2)
    assert "answered 500" in (billing.webhooks.list()[0].last_error or "")
    receiver.mode = "slow"
    receiver.slow_s = 1.5
    clock.advance(seconds=20)
    assert billing.webhooks.deliver() == DeliveryReport(retrying=2)
    # and finally up
    receiver.mode = "ok"
    receiver.received.clear()  # a slow answer may have been recorded after the timeout
    clock.advance(seconds=40)
    assert billing.webhooks.deliver() == DeliveryReport(delivered=2)
    # then each event arrived once more, with its stable id, signed, in the envelope
    outbox = billing.webhooks.list()
    assert [e.status for e in outbox] == ["delivered", "delivered"]
    assert [r.headers["Autumn-Event-Id"] for r in receiver.received] == [e.id for e in outbox]
    for got in receiver.received:
        payload = json.loads(got.body)
        assert payload["id"] == got.headers["Autumn-Event-Id"]
        assert payload["type"] == got.headers["Autumn-Event-Type"] == "customer.products.updated"
        assert payload["data"]["customer_id"] in ("ann", "bob")
        signed_at = verify(
            got.body,
            got.headers["Autumn-Signature"],
            SECRET,
            now=lambda: clock.now().timestamp(),
        )
        assert signed_at == int(clock.now().timestamp())
        with pytest.raises(WebhookSignatureError):
            verify(
                got.body + b" ", got.headers["Autumn-Signature"], SECRET, now=lambda t=signed_at: t
            )
        with pytest.raises(WebhookSignatureError):
            verify(got.body, got.headers["Autumn-Signature"], "other", now=lambda t=signed_at: t)


def test_only_the_event_types_asked_for_are_posted(billing: Autumn, receiver: Receiver) -> None:
    billing.webhooks.add_endpoint(receiver.url, secret=SECRET, types=["invoice.paid"])
    billing.customers.create("ann")
    billing.attach("ann", "pro")
    billing.webhooks.deliver()
    assert [r.headers["Autumn-Event-Type"] for r in receiver.received] == ["invoice.paid"]
