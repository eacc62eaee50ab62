"""Provider events (W1-W6), attach idempotency (I1-I3), bad input (A1): typed errors, no change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from autumn_core import (
    Autumn,
    EntityNotFound,
    GatewayEvent,
    IdempotencyConflict,
    InvalidRequest,
    ManualClock,
    ProductNotFound,
)
from autumn_memory import MemoryGateway
from tests.lifecycle.conftest import T0, D, Factory, statuses, totals


def _gid(billing: Autumn) -> str:
    gid = billing.customers.get("c").gateway_customer_id
    assert gid is not None
    return gid


def test_w6_subscription_deleted_expires_and_activates_the_default(
    billing: Autumn, gateway: MemoryGateway
) -> None:
    billing.attach("c", "pro")
    events = gateway.delete_subscription(_gid(billing))
    billing.handle_event(events[0])
    billing.handle_event(events[0])
    assert statuses(billing) == {"free": "active"}


def test_w5_portal_cancel_makes_the_product_canceling(
    billing: Autumn, gateway: MemoryGateway
) -> None:
    billing.attach("c", "pro")
    for event in gateway.cancel_at_period_end(_gid(billing)):
        billing.handle_event(event)
    pro = billing.customers.get("c").products[0]
    assert (pro.id, pro.canceled_at, pro.ends_at) == ("pro", T0, T0.replace(month=5))


def test_w5_w3_past_due_and_back(billing: Autumn, gateway: MemoryGateway) -> None:
    billing.attach("c", "pro")
    for event in gateway.set_subscription_status(_gid(billing), "past_due"):
        billing.handle_event(event)
    assert statuses(billing) == {"pro": "past_due"}
    for event in gateway.set_subscription_status(_gid(billing), "active"):
        billing.handle_event(event)
    assert statuses(billing) == {"pro": "active"}


def test_w4_w3_failed_renewal_then_paid(
    billing: Autumn, gateway: MemoryGateway, clock: ManualClock
) -> None:
    billing.attach("c", "pro")
    gateway.decline_next()
    clock.set(T0.replace(month=5) + timedelta(minutes=1))
    billing.process_due()  # the renewal is charged by a write, never by a read
    assert statuses(billing) == {"pro": "past_due"}
    renewal = billing.invoices.list("c")[1]
    assert renewal.gateway_invoice_id is not None
    for event in gateway.pay_invoice(renewal.gateway_invoice_id):
        billing.handle_event(event)
    assert statuses(billing) == {"pro": "active"}
    assert [i.status for i in billing.invoices.list("c")] == ["paid", "paid"]


def test_w1_echoes_of_the_engine_own_charges_change_nothing(
    billing: Autumn, gateway: MemoryGateway
) -> None:
    billing.attach("c", "pro")
    before = (billing.customers.get("c"), billing.invoices.list("c"))
    for event in list(gateway.events):
        billing.handle_event(event)
    assert (billing.customers.get("c"), billing.invoices.list("c")) == before


def test_unknown_event_types_are_ignored(billing: Autumn) -> None:
    billing.handle_event(
        GatewayEvent(id="x1", type="stripe.charge.refunded", gateway_customer_id=None)
    )
    with pytest.raises(InvalidRequest):
        billing.handle_event("not an event")  # type: ignore[arg-type]


# -- idempotency ---------------------------------------------------------------------------------
def test_i1_same_key_same_args_replays(billing: Autumn) -> None:
    first = billing.attach("c", "pro", idempotency_key="k1")
    again = billing.attach("c", "pro", idempotency_key="k1")
    assert again.replayed and not first.replayed
    assert again.invoice == first.invoice
    assert totals(billing) == [D("20.00")]


def test_i2_same_key_other_args_conflicts(billing: Autumn) -> None:
    billing.attach("c", "pro", idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):
        billing.attach("c", "premium", idempotency_key="k1")
    assert statuses(billing) == {"pro": "active"}


def test_i3_a_failed_call_stores_no_key(billing: Autumn, gateway: MemoryGateway) -> None:
    billing.customers.create("c")
    gateway.decline_next()
    with pytest.raises(Exception):  # noqa: B017 - PaymentFailed
        billing.attach("c", "pro", idempotency_key="k2")
    assert not billing.attach("c", "pro", idempotency_key="k2").replayed


def test_i1_key_forgotten_after_24h(billing: Autumn, clock: ManualClock) -> None:
    billing.attach("c", "boost", idempotency_key="k")
    clock.advance(hours=25)
    assert not billing.attach("c", "boost", idempotency_key="k").replayed
    assert billing.customers.get("c").features["words"].granted == 300


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"product_id": "nope"}, ProductNotFound),
        ({"product_id": "pro", "quantities": {"messages": 5}}, InvalidRequest),
        ({"product_id": "pp", "quantities": {"exports": -10}}, InvalidRequest),
        ({"product_id": "pp", "quantities": {"exports": "2.5"}}, InvalidRequest),
        ({"product_id": "pp", "quantities": {"exports": float("nan")}}, InvalidRequest),
        ({"product_id": "pp", "quantities": {"exports": "NaN"}}, InvalidRequest),
        ({"product_id": "pp", "quantities": {"exports": True}}, InvalidRequest),
        ({"product_id": "pro", "entity_id": "ghost"}, EntityNotFound),
        ({"product_id": "pro", "free_trial": 7}, InvalidRequest),
        ({"product_id": "pro", "force_checkout": "yes"}, InvalidRequest),
    ],
)
def test_a1_bad_input_raises_typed_errors_and_changes_nothing(
    make: Factory, gateway: MemoryGateway, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    from autumn_core import Item, Product
    from tests.lifecycle.conftest import base_products

    billing = make(
        [
            *base_products(),
            Product(
                "pp", items=[Item.priced("exports", billing="prepaid", billing_units=10, price=1)]
            ),
        ]
    )
    billing.attach("c", "pro")
    before = (billing.customers.get("c"), billing.invoices.list("c"), list(gateway.calls))
    product_id = kwargs.pop("product_id")
    with pytest.raises(error):
        billing.attach("c", product_id, **kwargs)
    with pytest.raises(error):
        billing.preview_attach("c", product_id, **kwargs)
    assert (billing.customers.get("c"), billing.invoices.list("c"), gateway.calls) == before


def test_a7_preview_writes_nothing_and_never_calls_the_gateway(
    billing: Autumn, gateway: MemoryGateway, clock: ManualClock
) -> None:
    billing.attach("c", "pro")
    clock.set(T0.replace(month=5) + timedelta(minutes=1))  # a renewal is due (lazy work)
    calls = list(gateway.calls)
    preview = billing.preview_attach("c", "premium")
    assert preview.scenario == "upgrade"
    assert gateway.calls == calls
    # a preview for an unknown customer previews its creation without creating it (C8)
    assert billing.preview_attach("new", "pro").scenario == "upgrade"
    with pytest.raises(Exception):  # noqa: B017 - CustomerNotFound
        billing.customers.get("new")
