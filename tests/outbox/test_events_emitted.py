"""What the use cases emit (docs/rules.md EO2, EO6), on every store: written with the change,
absent when the change rolled back."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest

from autumn_core import Autumn, ManualClock, PaymentFailed
from autumn_core.app.unit import Unit
from autumn_memory import MemoryGateway

from .conftest import T0, outbox, summary

UPDATED = "customer.products.updated"


def test_creating_a_customer_reports_its_default_product(billing: Autumn) -> None:
    # when a customer is created (it gets the free default)
    billing.customers.create("ann")
    # then one event says so, dated by the engine's clock
    [event] = outbox(billing)
    assert summary([event]) == [(UPDATED, "ann", "new", "free")]
    assert event.occurred_at == T0
    assert event.data["updated_product"]["status"] == "active"
    assert event.data["previous_status"] is None


def test_an_upgrade_reports_both_products_and_the_paid_invoice(billing: Autumn) -> None:
    # given a customer on free
    billing.customers.create("ann")
    # when she upgrades to pro ($20, paid now)
    billing.attach("ann", "pro")
    # then the $20 invoice was paid, free expired, pro is an upgrade
    assert summary(outbox(billing)[1:]) == [
        ("invoice.paid", "ann", "attach", "20.00"),
        (UPDATED, "ann", "expired", "free"),
        (UPDATED, "ann", "upgrade", "pro"),
    ]
    invoice = outbox(billing)[1].data["invoice"]
    assert invoice["total"] == Decimal("20.00")
    assert invoice["id"] == billing.invoices.list("ann")[0].id


def test_a_downgrade_is_scheduled_and_reported_when_it_starts(
    billing: Autumn, clock: ManualClock
) -> None:
    # given ann on premium
    billing.customers.create("ann")
    billing.attach("ann", "premium")
    seen = len(outbox(billing))
    # when she downgrades to pro (at period end), and the period ends
    billing.attach("ann", "pro")
    scheduled = summary(outbox(billing)[seen:])
    clock.advance(days=31)
    billing.process_due()
    ended = summary(outbox(billing)[seen + len(scheduled) :])
    # then the downgrade is announced as a cancel + a schedule, then the switch happens
    assert scheduled == [
        (UPDATED, "ann", "cancel", "premium"),
        (UPDATED, "ann", "scheduled", "pro"),
    ]
    assert ended == [
        ("invoice.paid", "ann", "switch", "20.00"),
        (UPDATED, "ann", "expired", "premium"),
        (UPDATED, "ann", "new", "pro"),
    ]


def test_cancel_and_uncancel(billing: Autumn) -> None:
    billing.customers.create("ann")
    billing.attach("ann", "pro")
    seen = len(outbox(billing))
    billing.cancel("ann", "pro")
    billing.uncancel("ann", "pro")
    assert [s[2:] for s in summary(outbox(billing)[seen:])] == [
        ("cancel", "pro"),
        ("scheduled", "free"),
        ("renew", "pro"),
        ("cancel", "free"),
    ]


def test_a_declined_attach_rolls_back_and_sends_nothing(
    billing: Autumn, gateway: MemoryGateway
) -> None:
    # given a customer, and a card that declines the next charge
    billing.customers.create("ann")
    before = outbox(billing)
    gateway.decline_next()
    # when the attach fails
    with pytest.raises(PaymentFailed):
        billing.attach("ann", "pro")
    # then no event of it exists: nothing changed
    assert outbox(billing) == before


def test_a_unit_that_raises_after_emitting_leaves_no_event(billing: Autumn) -> None:
    # given a write that changes a customer's products and emits, then fails before commit
    billing.customers.create("ann")
    before = outbox(billing)

    def body(unit: Unit) -> None:
        state = unit.get("ann")
        unit.put(attrs.evolve(state, products=()))
        unit.emit("customer.products.updated", {"scenario": "expired"}, customer_id="ann")
        unit.flush()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        billing._write(body)
    # then the outbox is as it was, and so is the customer
    assert outbox(billing) == before
    assert billing.customers.get("ann").has_product("free")


def test_a_failed_renewal_reports_the_failed_payment_and_past_due(
    billing: Autumn, clock: ManualClock, gateway: MemoryGateway
) -> None:
    # given ann on pro, and a card that declines the renewal
    billing.customers.create("ann")
    billing.attach("ann", "pro")
    seen = len(outbox(billing))
    gateway.decline_next()
    # when the period ends
    clock.advance(days=31)
    billing.process_due()
    # then the failed payment and the past-due product are reported
    assert summary(outbox(billing)[seen:]) == [
        ("invoice.payment_failed", "ann", "renewal", "20.00"),
        (UPDATED, "ann", "past_due", "pro"),
    ]


def test_trial_ending_is_sent_once_three_days_before(billing: Autumn, clock: ManualClock) -> None:
    # given ann trialing "trial" (14 days, no card)
    billing.customers.create("ann")
    billing.attach("ann", "trial")
    seen = len(outbox(billing))
    # when process_due runs 10 days in (4 days left), then at 11.5 days, twice
    clock.advance(days=10)
    billing.process_due()
    early = outbox(billing)[seen:]
    clock.advance(days=1, hours=12)
    billing.process_due()
    billing.process_due()
    # then nothing is sent early, and one notice at 2.5 days left
    assert early == []
    [notice] = outbox(billing)[seen:]
    assert (notice.type, notice.customer_id, notice.data["product_id"]) == (
        "customer.trial_ending",
        "ann",
        "trial",
    )
    ends = T0 + timedelta(days=14)
    assert notice.data["trial_ends_at"] == int(ends.timestamp() * 1000)
    assert notice.data["days_left"] == 2


def test_the_trial_notice_window_is_configurable(billing: Autumn, clock: ManualClock) -> None:
    billing.webhooks.trial_notice = timedelta(days=7)
    billing.customers.create("ann")
    billing.attach("ann", "trial")
    clock.advance(days=8)
    billing.process_due()
    assert [e.type for e in outbox(billing)].count("customer.trial_ending") == 1


def test_provider_events_report_the_checkout_and_the_late_payment(
    make: Any, clock: ManualClock
) -> None:
    # given a customer without a card: a paid attach goes through a checkout
    gateway = MemoryGateway(card_on_file=False)
    billing = make(gateway=gateway)
    billing.customers.create("ann")
    url = billing.attach("ann", "pro").checkout_url
    assert url is not None and outbox(billing)[1:] == []  # nothing happened yet
    # when the customer pays the checkout
    for event in gateway.complete_checkout(url):
        billing.handle_event(event)
    # then the paid checkout and the upgrade are reported
    assert summary(outbox(billing)[1:]) == [
        ("invoice.paid", "ann", "checkout", "20.00"),
        (UPDATED, "ann", "expired", "free"),
        (UPDATED, "ann", "upgrade", "pro"),
    ]
    # and when the renewal is declined, then paid late at the provider
    seen = len(outbox(billing))
    gateway.decline_next()
    clock.advance(days=31)
    billing.process_due()
    [failed] = [i for i in billing.invoices.list("ann") if i.status == "open"]
    assert failed.gateway_invoice_id is not None
    for event in gateway.pay_invoice(failed.gateway_invoice_id):
        billing.handle_event(event)
    assert summary(outbox(billing)[seen:]) == [
        ("invoice.payment_failed", "ann", "renewal", "20.00"),
        (UPDATED, "ann", "past_due", "pro"),
        ("invoice.paid", "ann", "provider", "20.00"),
        (UPDATED, "ann", "active", "pro"),
    ]
