"""Small builders of store records, so contract tests state only what matters to them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from autumn_core.catalog import Rollover
from autumn_core.model import (
    CustomerState,
    EntityState,
    EventRecord,
    IdempotencyRecord,
    InvoiceLineRecord,
    InvoiceRecord,
    PendingRecord,
    ProductState,
    ProductVersionRecord,
    RolloverState,
    RowState,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
D = Decimal

_counter = itertools.count(1)


def unique(prefix: str) -> str:
    """A fresh identifier, so tests sharing a store never collide."""
    return f"{prefix}_{next(_counter)}"


def row(
    row_id: str | None = None,
    feature_id: str = "messages",
    *,
    granted: Decimal | str | int = 0,
    balance: Decimal | str | int = 0,
    **kw: Any,
) -> RowState:
    return RowState(
        id=row_id or unique("row"),
        feature_id=feature_id,
        created_at=kw.pop("created_at", T0),
        granted=D(granted),
        balance=D(balance),
        **kw,
    )


def product(
    instance_id: str | None = None,
    product_id: str = "pro",
    *,
    version: int = 1,
    status: str = "active",
    **kw: Any,
) -> ProductState:
    return ProductState(
        instance_id=instance_id or unique("cp"),
        product_id=product_id,
        version=version,
        status=status,
        created_at=kw.pop("created_at", T0),
        **kw,
    )


def entity(entity_id: str | None = None, feature_id: str = "seats", **kw: Any) -> EntityState:
    return EntityState(
        id=entity_id or unique("ent"),
        feature_id=feature_id,
        created_at=kw.pop("created_at", T0),
        **kw,
    )


def customer(
    customer_id: str | None = "",
    *,
    pk: str | None = None,
    email: str | None = None,
    created_at: datetime = T0,
    **kw: Any,
) -> CustomerState:
    """A customer; ``customer_id=""`` (the default) picks a fresh id, ``None`` makes it id-less."""
    return CustomerState(
        pk=pk or unique("pk"),
        id=unique("cus") if customer_id == "" else customer_id,
        created_at=created_at,
        email=email,
        **kw,
    )


def rich_customer(customer_id: str | None = "") -> CustomerState:
    """A customer with every kind of child record and awkward values in it."""
    cp = product(
        "cp_rich",
        "pro",
        version=3,
        quantities={"seats": D("3"), "credits": D("2500.50")},
        pending_quantities={"seats": D(5)},
        started_at=T0,
        current_period_start=T0,
        current_period_end=T0 + timedelta(days=31),
        trial_ends_at=T0 + timedelta(days=14),
        gateway_refs={"subscription": "sub_123"},
        next_cycle_adjustments=(("seats", "prorate", D("-3.33")),),
        free=False,
    )
    rows = (
        row(
            "row_msgs",
            "messages",
            granted="1000",
            balance="23.47",
            cp_id="cp_rich",
            product_id="pro",
            item_index=1,
            reset="month",
            anchor=T0,
            next_reset_at=T0 + timedelta(days=31),
            rollover=Rollover(max=D(500), expires_after_months=2),
            rollovers=(
                RolloverState("ro_1", D("120.5"), D("0.1"), T0 + timedelta(days=60), T0),
                RolloverState("ro_2", D(7), D(7), None, T0),
            ),
        ),
        row("row_seats", "seats", granted=3, balance=-2, allocated=True, paid_seats=D(2)),
        row("row_grant", "credits", granted="0.000001", balance="-1000000000000000"),
    )
    return customer(
        customer_id,
        email="Rich@Example.com",
        name="Rich Ltd",
        fingerprint="fp-rich",
        metadata={"plan": "enterprise", "seats": 12, "tags": ["a", "b"], "nested": {"x": None}},
        gateway_customer_id="gcus_1",
        products=(cp,),
        rows=rows,
        entities=(entity("ent_1", "seats", name="Laptop"), entity("ent_2", "seats")),
    )


def event(
    customer_pk: str,
    *,
    event_id: str | None = None,
    feature_id: str | None = "messages",
    event_name: str | None = None,
    value: Decimal | str | int = 1,
    timestamp: datetime = T0,
    entity_id: str | None = None,
    properties: dict[str, Any] | None = None,
) -> EventRecord:
    return EventRecord(
        id=event_id or unique("evt"),
        customer_pk=customer_pk,
        entity_id=entity_id,
        feature_id=feature_id,
        event_name=event_name,
        value=D(value),
        properties=properties or {},
        timestamp=timestamp,
        created_at=timestamp,
    )


def idempotency(
    customer_pk: str,
    key: str = "key-1",
    *,
    operation: str = "track",
    created_at: datetime = T0,
    fingerprint: str = "args-1",
    result: dict[str, Any] | None = None,
) -> IdempotencyRecord:
    return IdempotencyRecord(
        operation=operation,
        customer_pk=customer_pk,
        key=key,
        fingerprint=fingerprint,
        result=result if result is not None else {"event_id": "evt_1", "applied": {"m": "1.5"}},
        created_at=created_at,
    )


def invoice(
    customer_pk: str,
    invoice_id: str | None = None,
    *,
    status: str = "paid",
    total: Decimal | str = "20.00",
    gateway_invoice_id: str | None = None,
) -> InvoiceRecord:
    return InvoiceRecord(
        id=invoice_id or unique("inv"),
        customer_pk=customer_pk,
        status=status,
        total=D(total),
        currency="usd",
        lines=(
            InvoiceLineRecord(
                "Pro",
                D(total),
                product_id="pro",
                period_start=T0,
                period_end=T0 + timedelta(days=31),
            ),
            InvoiceLineRecord("Seats", D("0.10"), feature_id="seats", quantity=D("3")),
        ),
        created_at=T0,
        gateway_invoice_id=gateway_invoice_id,
        cp_id="cp_1",
    )


def pending(key: str, customer_pk: str = "pk_x", *, kind: str = "checkout") -> PendingRecord:
    return PendingRecord(
        key=key,
        customer_pk=customer_pk,
        kind=kind,
        payload={"product_id": "pro", "quantities": {"seats": "3"}},
        created_at=T0,
    )


def product_version(product_id: str, version: int, definition: str = "{}") -> ProductVersionRecord:
    return ProductVersionRecord(product_id, version, definition, T0)
