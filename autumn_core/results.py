"""Public value objects: what callers pass in and get back (API.md). All frozen attrs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from autumn_core.controls import NO_CONTROLS, BillingControls
from autumn_core.provider_events import ProviderEvent


class _Unset:
    """The 'argument not given' marker (distinct from None, which means 'no')."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


@attrs.frozen
class ByEmail:
    """Addresses a customer by email where a customer id is taken (docs/rules.md C14)."""

    email: str


@attrs.frozen
class CustomerData:
    name: str | None = None
    email: str | None = None
    fingerprint: str | None = None
    metadata: Mapping[str, Any] | None = None


@attrs.frozen
class TrackRequest:
    customer_id: Any
    feature_id: str | None = None
    event_name: str | None = None
    value: Any = 1
    entity_id: str | None = None
    idempotency_key: str | None = None
    properties: Mapping[str, Any] | None = None
    timestamp: datetime | None = None
    overage: str = "cap"
    customer_data: CustomerData | None = None


@attrs.frozen
class RolloverBalance:
    amount: Decimal
    balance: Decimal
    expires_at: datetime | None


@attrs.frozen(slots=False)  # built for every changed row: a dict __init__ is cheaper
class BalanceRow:
    id: str
    feature_id: str
    product_id: str | None
    entity_id: str | None
    granted: Decimal
    balance: Decimal
    usage: Decimal
    overage_allowed: bool
    reset: str | None
    next_reset_at: datetime | None
    expires_at: datetime | None


# Not slotted: a check returns a copy of a memoized Balance (``rules.balance_view.detached``),
# and copying a dict is a third of the cost of a slotted __init__.
@attrs.frozen(slots=False)
class Balance:
    feature_id: str
    type: str
    unlimited: bool = False
    granted: Decimal = Decimal(0)
    remaining: Decimal = Decimal(0)
    usage: Decimal = Decimal(0)
    overage: Decimal = Decimal(0)
    overage_allowed: bool = False
    max_purchase: Decimal | None = None
    next_reset_at: datetime | None = None
    interval: str | None = None
    breakdown: list[BalanceRow] = attrs.field(factory=list)
    rollovers: list[RolloverBalance] = attrs.field(factory=list)
    #: Held by open locks (already out of ``remaining``; a release gives it back).
    held: Decimal = Decimal(0)


@attrs.frozen
class CustomerProduct:
    id: str
    name: str | None
    version: int
    status: str
    add_on: bool
    default: bool
    group: str
    entity_id: str | None
    quantities: dict[str, Decimal]
    started_at: datetime | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    trial_ends_at: datetime | None
    canceled_at: datetime | None
    ends_at: datetime | None


@attrs.frozen
class Entity:
    id: str
    customer_id: str | None
    feature_id: str
    name: str | None
    created_at: datetime
    products: list[CustomerProduct] = attrs.field(factory=list)
    features: dict[str, Balance] = attrs.field(factory=dict)
    billing_controls: BillingControls = NO_CONTROLS
    #: Units used so far in the current window of each usage limit of ``billing_controls``, by
    #: feature id (Autumn's ``usage_limits[].usage``; BC3).
    limit_usage: dict[str, Decimal] = attrs.field(factory=dict)


@attrs.frozen
class Customer:
    id: str | None
    name: str | None
    email: str | None
    fingerprint: str | None
    metadata: dict[str, Any]
    created_at: datetime
    gateway_customer_id: str | None
    products: list[CustomerProduct] = attrs.field(factory=list)
    features: dict[str, Balance] = attrs.field(factory=dict)
    entities: list[Entity] = attrs.field(factory=list)
    billing_controls: BillingControls = NO_CONTROLS
    #: Units used so far in the current window of each usage limit of ``billing_controls``, by
    #: feature id (Autumn's ``usage_limits[].usage``; BC3).
    limit_usage: dict[str, Decimal] = attrs.field(factory=dict)

    def has_product(self, product_id: str) -> bool:
        return any(p.id == product_id and p.status != "scheduled" for p in self.products)

    def has_feature(self, feature_id: str) -> bool:
        return feature_id in self.features


@attrs.frozen(slots=False)  # built on every call: a dict __init__ is cheaper
class CheckResult:
    allowed: bool
    customer_id: str | None
    feature_id: str
    required_balance: Decimal
    entity_id: str | None = None
    balance: Balance | None = None
    #: The lock a ``check(..., lock=...)`` took (its id, generated when none was given).
    lock_id: str | None = None


@attrs.frozen(slots=False)  # built on every call: a dict __init__ is cheaper
class FinalizeResult:
    """What ``balances.finalize`` did with a lock: ``value`` is what the customer was charged
    in the end (0 for a release); ``replayed`` when the lock had been finalized already.
    (``customers.get`` shows the balance after it.)"""

    lock_id: str
    action: str
    customer_id: str | None
    feature_id: str
    entity_id: str | None
    held: Decimal
    value: Decimal
    replayed: bool = False


@attrs.frozen(slots=False)  # built on every call: a dict __init__ is cheaper
class TrackResult:
    event_id: str
    customer_id: str | None
    entity_id: str | None
    value: Decimal
    applied: dict[str, Decimal] = attrs.field(factory=dict)
    balances: dict[str, Balance] = attrs.field(factory=dict)
    replayed: bool = False


@attrs.frozen
class Event:
    id: str
    customer_id: str | None
    entity_id: str | None
    feature_id: str | None
    event_name: str | None
    value: Decimal
    properties: dict[str, Any]
    timestamp: datetime


@attrs.frozen
class InvoiceLine:
    description: str
    product_id: str | None
    feature_id: str | None
    quantity: Decimal
    amount: Decimal
    period_start: datetime | None
    period_end: datetime | None


@attrs.frozen
class Invoice:
    id: str
    customer_id: str | None
    status: str
    total: Decimal
    currency: str
    lines: list[InvoiceLine]
    created_at: datetime
    gateway_invoice_id: str | None = None


@attrs.frozen
class AttachResult:
    scenario: str
    product: CustomerProduct | None = None
    checkout_url: str | None = None
    invoice: Invoice | None = None
    trial_ends_at: datetime | None = None
    replayed: bool = False


@attrs.frozen
class AttachPreview:
    scenario: str
    due_now: Decimal
    lines: list[InvoiceLine]
    next_cycle_at: datetime | None
    next_cycle_total: Decimal


@attrs.frozen
class EventBin:
    """One time bin of ``events.aggregate``: the amount per feature, split per group if asked."""

    period_start: datetime
    values: dict[str, Decimal]
    #: feature id -> group value -> amount; None without ``group_by``.
    grouped: dict[str, dict[str, Decimal]] | None = None


@attrs.frozen
class EventTotal:
    count: int
    sum: Decimal


@attrs.frozen
class EventAggregate:
    """``events.aggregate``: every bin of the range, oldest first, and the totals per feature."""

    bins: list[EventBin]
    totals: dict[str, EventTotal]


@attrs.frozen
class ProductVersion:
    """One stored version of a catalog product (``billing.products.versions``)."""

    product_id: str
    version: int
    created_at: datetime
    #: The newest version: what an attach without ``version=`` gets.
    latest: bool
    product: Any


@attrs.frozen
class GatewayEvent:
    """A provider-neutral payment-provider event (API.md).

    ``payload`` is what the engine acts on: the gateway's parse of the event into a record of
    ``autumn_core.provider_events`` (None for an event the engine has no use for, which
    ``handle_event`` records and ignores). ``data`` keeps the provider's own object, for the
    application's logs; the engine never reads it.
    """

    id: str
    type: str
    gateway_customer_id: str | None
    data: Mapping[str, Any] = attrs.field(factory=dict)
    created_at: datetime | None = None
    payload: ProviderEvent | None = None
