"""A read never moves money: check, customers.get/list, invoices, events and previews call no
gateway method and record no invoice, yet they see what is due by now (S4, S7, X2).

Given customers whose renewals and period-end cancellation are a year overdue, an engine
whose gateway raises on every call reads them with the right balances; then ``process_due``
(a write, on an engine with a working gateway) records the renewals, once, and its state is
the one the reads showed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

import pytest

from autumn_core import Autumn, Catalog, Customer, Feature, Item, ManualClock, Price, Product
from autumn_core.model import InvoiceRecord
from autumn_core.ports import Store
from autumn_memory import MemoryGateway

T0 = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
A_YEAR_LATER = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)
D = Decimal


class RaisingGateway:
    """A payment provider every method of which fails the test that reaches it."""

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> NoReturn:
            raise AssertionError(f"a read called the gateway: {name}")

        return call


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages", event_names=["chat"]), Feature.allocated("seats")],
        products=[
            Product(
                "free",
                default=True,
                items=[Item.feature("messages", included=100, reset="month")],
            ),
            Product(
                "pro",
                price=Price(20),
                items=[
                    Item.feature("messages", included=1000, reset="month"),
                    Item.priced("messages", price="0.01", billing="usage", max_purchase=5000),
                ],
            ),
            Product("team", price=Price(50), items=[Item.feature("messages", included=3000)]),
        ],
    )


def invoices(store: Store, engine: Autumn, customer_id: str) -> list[InvoiceRecord]:
    """The invoices the store holds, read beside the engine."""
    with store.transaction(write=False) as tx:
        pk = tx.customer_pk(customer_id)
        assert pk is not None
        return tx.list_invoices(pk)


def reading(customer: Customer) -> tuple[Any, ...]:
    return (
        sorted(
            (p.id, p.status, p.current_period_start, p.current_period_end)
            for p in customer.products
        ),
        {
            f: (b.granted, b.remaining, b.usage, b.next_reset_at)
            for f, b in customer.features.items()
        },
    )


def test_a_year_overdue_customer_is_read_without_the_gateway_then_billed_once(
    store: Store,
) -> None:
    clock = ManualClock(T0)
    gateway = MemoryGateway(clock=clock)
    billing = Autumn(catalog(), store=store, gateway=gateway, clock=clock)
    # Given: "pro" renews every month, 1,200 messages used in its first period (200 beyond the
    # 1,000 included); "leaver" cancels "team" at its period end; "basic" stays on the default.
    billing.attach("pro-user", "pro")
    billing.track("pro-user", "messages", value=1200)
    billing.attach("leaver", "team")
    billing.cancel("leaver", "team")
    billing.track("basic", "messages", value=40)
    billed = {c: len(invoices(store, billing, c)) for c in ("pro-user", "leaver", "basic")}
    assert billed == {"pro-user": 1, "leaver": 1, "basic": 0}

    # When: a year later, an engine whose gateway raises on every call only reads.
    clock.set(A_YEAR_LATER)
    reader = Autumn(catalog(), store=store, gateway=RaisingGateway(), clock=clock)  # type: ignore[arg-type]
    check = reader.check("pro-user", "messages", required_balance=1000)
    got = reader.customers.get("pro-user")
    listed = {c.id: c for c in reader.customers.list()}
    events = reader.events.list("pro-user")
    preview = reader.preview_attach("basic", "pro")
    upgrade = reader.preview_attach("pro-user", "team")
    leaver = reader.customers.get("leaver")
    listed_invoices = reader.invoices.list("pro-user")
    basic = reader.check("basic", "messages", required_balance=100)
    newcomer = reader.check("newcomer", "messages")  # auto-created on the free default

    # Then: the reads see the renewals, resets and the cancellation as of now...
    assert check.allowed and check.balance is not None
    assert (check.balance.granted, check.balance.remaining) == (D(1000), D(1000))
    pro = next(p for p in got.products if p.id == "pro")
    assert (pro.status, pro.current_period_start) == (
        "active",
        datetime(2026, 1, 15, 9, tzinfo=UTC),
    )
    messages = got.features["messages"]
    assert (messages.remaining, messages.usage) == (D(1000), D(0))
    assert [p.id for p in leaver.products] == ["free"]
    assert leaver.features["messages"].remaining == D(100)
    assert basic.allowed and basic.balance is not None and basic.balance.remaining == D(100)
    assert newcomer.allowed and newcomer.balance is not None
    assert newcomer.balance.remaining == D(100)
    assert reading(listed["pro-user"]) == reading(got)
    assert reading(listed["leaver"]) == reading(leaver)
    assert [e.value for e in events] == [D(1200)]
    assert preview.due_now == D("20.00")
    assert [i.total for i in listed_invoices] == [D("20.00")]
    # ... and recorded nothing: no invoice, no renewal marker taken (process_due still bills).
    assert {c: len(invoices(store, billing, c)) for c in billed} == billed

    # When: process_due runs (a write, with a working gateway).
    charges_before = len(gateway.calls)
    assert billing.process_due() == 3
    assert billing.process_due() == 0

    # Then: twelve renewals of pro, the first with the 200 messages of overage; one final
    # invoice of the leaver's team (nothing to bill in arrears: it is not usage-priced).
    pro_invoices = invoices(store, billing, "pro-user")
    assert [i.total for i in pro_invoices] == [D("20.00"), D("22.00"), *[D("20.00")] * 11]
    assert len(invoices(store, billing, "leaver")) == 1
    assert len(gateway.calls) > charges_before
    # The state the write recorded is the one the reads showed.
    assert reading(billing.customers.get("pro-user")) == reading(got)
    assert reading(billing.customers.get("leaver")) == reading(leaver)
    # A preview of the upgrade saw the same current period as the write recorded.
    assert billing.preview_attach("pro-user", "team") == upgrade
    assert upgrade.scenario == "upgrade" and upgrade.due_now > 0
    # Then the gateway-less reader reads the recorded state as it is.
    assert reading(reader.customers.get("pro-user")) == reading(got)


@pytest.mark.parametrize("store", ["memory"], indirect=True)
def test_a_read_of_a_declined_renewal_still_charges_nothing(store: Store) -> None:
    clock = ManualClock(T0)
    gateway = MemoryGateway(clock=clock)
    billing = Autumn(catalog(), store=store, gateway=gateway, clock=clock)
    billing.attach("c", "pro")
    gateway.decline_next()
    clock.set(T0 + timedelta(days=40))
    calls = len(gateway.calls)
    assert [p.status for p in billing.customers.get("c").products] == ["active"]
    assert len(gateway.calls) == calls
    billing.process_due()
    assert [p.status for p in billing.customers.get("c").products] == ["past_due"]
