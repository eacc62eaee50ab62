"""W6 (and W5) made precise: a deleted provider subscription ends only what it billed.

MemoryGateway, like StripeGateway, keeps one subscription per billing cycle and reports in
``ChargeOutcome.subscriptions`` which subscription bills each product; the engine keeps it in
``ProductState.gateway_refs["subscription_id"]``.
"""

from __future__ import annotations

from autumn_core import Autumn, Item, ManualClock, Price, Product
from autumn_core.app.billing import SUBSCRIPTION_REF
from autumn_core.app.events import billed_through
from autumn_core.model import ProductState
from autumn_core.provider_events import SubscriptionDeleted
from autumn_core.results import GatewayEvent
from autumn_memory import MemoryGateway

from .conftest import T0, D, Factory, base_products, statuses, totals

METERED = Product(
    "metered",
    name="Metered",
    price=Price(20),
    items=[Item.priced("messages", included=100, price="0.10", billing="usage")],
)
YEARLY = Product(
    "yearly-addon",
    name="Yearly add-on",
    add_on=True,
    price=Price(240, interval="year"),
    items=[Item.feature("words", included=10)],
)


def engine(make: Factory) -> Autumn:
    return make([*base_products(), METERED, YEARLY])


def two_cycles(billing: Autumn, gateway: MemoryGateway, clock: ManualClock) -> str:
    """A monthly product with 50 messages of overage and a yearly add-on; returns the gid."""
    billing.attach("c", "metered")
    billing.attach("c", "yearly-addon")
    billing.track("c", "messages", value=150)
    clock.advance(days=10)
    gid = billing.customers.get("c").gateway_customer_id
    assert gid is not None
    assert sorted(s.cycle for s in gateway.subscriptions_of(gid)) == ["month:1", "year:1"]
    return gid


def apply(billing: Autumn, events: list[GatewayEvent]) -> None:
    for event in events:
        billing.handle_event(event)


def test_w6_products_record_the_subscription_that_bills_them(
    make: Factory, gateway: MemoryGateway, clock: ManualClock
) -> None:
    billing = engine(make)
    gid = two_cycles(billing, gateway, clock)
    monthly, yearly = (
        gateway.subscription_of(gid, "month:1"),
        gateway.subscription_of(gid, "year:1"),
    )
    assert monthly is not None and yearly is not None
    state = billing._ctx.run(lambda tx: tx.load_customer(tx.customer_pk("c")), write=False)
    refs = {p.product_id: p.gateway_refs.get(SUBSCRIPTION_REF) for p in state.products}
    assert refs == {"free": None, "metered": monthly.id, "yearly-addon": yearly.id}


def test_w6_deleting_the_monthly_subscription_expires_only_its_product(
    make: Factory, gateway: MemoryGateway, clock: ManualClock
) -> None:
    billing = engine(make)
    gid = two_cycles(billing, gateway, clock)
    # when the provider deletes the monthly subscription on day 10
    events = gateway.delete_subscription(gid, "month:1")
    apply(billing, events)
    # then only the monthly product ends (its default comes back); the yearly add-on stays
    assert statuses(billing) == {"free": "active", "yearly-addon": "active"}
    # and its final arrears (50 x $0.10) are billed once
    assert totals(billing) == [D("20.00"), D("240.00"), D("5.00")]
    final = billing.invoices.list("c")[-1]
    assert [(ln.description, ln.amount) for ln in final.lines] == [
        ("Metered: 50 messages overage", D("5.00"))
    ]
    assert final.created_at == clock.now()
    # when the same event arrives again, and then a status update for the same subscription
    apply(billing, events)
    sub = gateway.subscriptions[events[0].data["id"]]
    apply(billing, [gateway._subscription_event("subscription.updated", sub)])
    # then nothing more is billed or changed
    assert totals(billing) == [D("20.00"), D("240.00"), D("5.00")]
    assert statuses(billing) == {"free": "active", "yearly-addon": "active"}


def test_w6_deleting_the_yearly_subscription_leaves_the_monthly_cycle(
    make: Factory, gateway: MemoryGateway, clock: ManualClock
) -> None:
    billing = engine(make)
    gid = two_cycles(billing, gateway, clock)
    # when the yearly subscription is deleted
    apply(billing, gateway.delete_subscription(gid, "year:1"))
    # then the add-on expires (no arrears: it has no usage price); the monthly product renews
    assert statuses(billing) == {"metered": "active"}
    assert totals(billing) == [D("20.00"), D("240.00")]
    clock.set(T0.replace(month=5))
    billing.process_due()
    assert totals(billing) == [D("20.00"), D("240.00"), D("25.00")]


def test_w5_portal_cancel_of_one_subscription_cancels_only_its_products(
    make: Factory, gateway: MemoryGateway, clock: ManualClock
) -> None:
    billing = engine(make)
    gid = two_cycles(billing, gateway, clock)
    apply(billing, gateway.cancel_at_period_end(gid, "year:1"))
    products = {p.id: p for p in billing.customers.get("c").products}
    assert products["yearly-addon"].canceled_at == clock.now()
    assert products["metered"].canceled_at is None


def _cp(pid: str, refs: dict[str, str]) -> ProductState:
    return ProductState(
        instance_id=f"cp_{pid}",
        product_id=pid,
        version=1,
        status="active",
        created_at=T0,
        free=False,
        gateway_refs=refs,
    )


def test_w6_billed_through_falls_back_to_every_product_when_nothing_is_recorded() -> None:
    from autumn_core.model import CustomerState

    state = CustomerState(pk="p", id="c", created_at=T0, products=(_cp("a", {}), _cp("b", {})))
    # a gateway that reports no subscription ids and no items: today's behaviour, all of them
    assert [p.product_id for p in billed_through(state, SubscriptionDeleted("sub_1"))] == [
        "a",
        "b",
    ]
    # items naming products (Stripe's items.data[].metadata.autumn_product_id) select them
    named = SubscriptionDeleted("sub_1", frozenset({"b"}))
    assert [p.product_id for p in billed_through(state, named)] == ["b"]
    # a recorded subscription id wins
    state2 = CustomerState(
        pk="p",
        id="c",
        created_at=T0,
        products=(_cp("a", {SUBSCRIPTION_REF: "sub_1"}), _cp("b", {SUBSCRIPTION_REF: "sub_2"})),
    )
    assert [p.product_id for p in billed_through(state2, SubscriptionDeleted("sub_2"))] == ["b"]
