"""The stored state of a customer: the aggregate every use case loads, changes and saves.

All records are frozen attrs objects. A use case builds a new ``CustomerState`` with
``attrs.evolve``; unchanged rows keep their identity, so a store can save only what changed
(compare with ``is``). These records are internal; the public, derived views live in
``autumn_core.results``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar, overload

import attrs

from autumn_core.catalog import Rollover
from autumn_core.control_state import NO_STATE, ControlState
from autumn_core.controls import NO_CONTROLS, BillingControls
from autumn_core.results import BalanceRow
from autumn_core.rules.due import next_due_at

ZERO = Decimal(0)

_T = TypeVar("_T")
_V = TypeVar("_V")
_FIELDS: dict[type, tuple[Callable[[Any], tuple[Any, ...]], dict[str, int]]] = {}
#: Dict records: their field names, and the names of their derived values (never copied).
_CACHED: dict[type, tuple[frozenset[str], tuple[str, ...]]] = {}


def replace(obj: _T, **changes: Any) -> _T:
    """``attrs.evolve`` at a fraction of the cost: records are copied on every call of the hot
    path (a track copies a row and the customer).

    The two records copied most (``RowState``, ``CustomerState``) are dict classes: a copy is
    one dict copy without the cached (derived) properties, instead of an ``__init__`` that
    sets some thirty slots one by one. Other records: one attrgetter, then ``__init__``.
    """
    cls = type(obj)
    cached = _CACHED.get(cls)
    if cached is not None:
        fields, derived = cached
        if not fields.issuperset(changes):
            raise TypeError(f"{cls.__name__} has no field {sorted(set(changes) - fields)}")
        values = obj.__dict__.copy()
        for name in derived:
            if name in values:
                del values[name]
        values.update(changes)
        new = object.__new__(cls)
        object.__setattr__(new, "__dict__", values)
        return new
    spec = _FIELDS.get(cls)
    if spec is None:
        names = [a.name for a in attrs.fields(cls)]  # type: ignore[arg-type]
        spec = (operator.attrgetter(*names), {n: i for i, n in enumerate(names)})
        _FIELDS[cls] = spec
    values_list = list(spec[0](obj))
    index = spec[1]
    for name, value in changes.items():
        values_list[index[name]] = value
    return cls(*values_list)


class derived(Generic[_V]):
    """A value computed from an immutable record on first use and kept in its ``__dict__``.

    ``functools.cached_property`` without its per-access lock (Python 3.11 takes one): two
    threads racing on first use both compute the same value from the same frozen record.
    """

    def __init__(self, fn: Callable[[Any], _V]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> derived[_V]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _V: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> _V | derived[_V]:
        if obj is None:
            return self
        value = self.fn(obj)
        obj.__dict__[self.name] = value
        return value


def _dict_record(cls: type[_T]) -> type[_T]:
    """Register a (non-slotted) record for ``replace``'s dict copy."""
    names = tuple(name for name, v in vars(cls).items() if isinstance(v, derived))
    _CACHED[cls] = (frozenset(a.name for a in attrs.fields(cls)), names)  # type: ignore[arg-type]
    return cls


#: Statuses stored on a customer product; "trialing" is derived (docs/rules.md 2.4).
STORED_STATUSES = ("scheduled", "active", "past_due", "expired")


@attrs.frozen
class RolloverState:
    id: str
    amount: Decimal
    balance: Decimal
    expires_at: datetime | None
    created_at: datetime


@_dict_record
@attrs.frozen(slots=False)
class RowState:
    """One balance row: made from one item of one customer product, or by ``balances.grant``."""

    id: str
    feature_id: str
    created_at: datetime
    granted: Decimal = ZERO
    balance: Decimal = ZERO
    #: The customer-product instance the row belongs to; None for a grant.
    cp_id: str | None = None
    product_id: str | None = None
    #: Index of the item in the product version's items (pricing config at renewal).
    item_index: int | None = None
    entity_id: str | None = None
    #: Made from a ``per_entity`` item: one such row per entity.
    per_entity: bool = False
    unlimited: bool = False
    #: Usage counted on an unlimited row (R5).
    unlimited_usage: Decimal = ZERO
    #: None (free grant), "usage" or "prepaid".
    billing: str | None = None
    #: For usage-billed rows: overage cap; None means unbounded.
    max_purchase: Decimal | None = None
    allocated: bool = False
    #: Add-on products and grants rank after main products (O8).
    add_on: bool = False
    reset: str | None = None
    reset_count: int = 1
    anchor: datetime | None = None
    next_reset_at: datetime | None = None
    expires_at: datetime | None = None
    #: Price-backed rows whose reset is their billing interval renew with the product (S6, S7).
    renews_with_product: bool = False
    rollover: Rollover | None = None
    rollovers: tuple[RolloverState, ...] = ()
    #: Paid seats of a usage-billed allocated row (P7).
    paid_seats: Decimal = ZERO
    #: Included units (the free part of ``granted``), for paid seats and overage pricing.
    included: Decimal = ZERO

    @property
    def is_grant(self) -> bool:
        return self.cp_id is None

    @property
    def overage_allowed(self) -> bool:
        return self.billing == "usage"

    @property
    def usage(self) -> Decimal:
        return self.granted - self.balance

    @derived
    def public(self) -> BalanceRow:
        """The row as ``Balance.breakdown`` shows it; built once per (immutable) row."""
        return BalanceRow(
            self.id,
            self.feature_id,
            self.product_id,
            self.entity_id,
            self.granted,
            self.balance,
            self.granted - self.balance,
            self.billing == "usage",
            self.reset,
            self.next_reset_at,
            self.expires_at,
        )


@attrs.frozen
class EntityState:
    id: str
    feature_id: str
    created_at: datetime
    name: str | None = None
    #: The entity's own controls; the customer's fill in the features it does not set (BC1).
    billing_controls: BillingControls = NO_CONTROLS


@attrs.frozen
class ProductState:
    """One attachment of one product version to a subject (a CustomerProduct)."""

    instance_id: str
    product_id: str
    version: int
    status: str
    created_at: datetime
    entity_id: str | None = None
    add_on: bool = False
    default: bool = False
    group: str = ""
    one_off: bool = False
    free: bool = True
    quantities: Mapping[str, Decimal] = attrs.field(factory=dict)
    pending_quantities: Mapping[str, Decimal] | None = None
    started_at: datetime | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    trial_ends_at: datetime | None = None
    canceled_at: datetime | None = None
    ends_at: datetime | None = None
    billing_anchor: datetime | None = None
    reset_anchor: datetime | None = None
    #: Provider-side references (subscription id, item ids); opaque to the core.
    gateway_refs: Mapping[str, str] = attrs.field(factory=dict)
    #: Prorated amounts deferred to the next renewal (``*_next_cycle`` behaviours).
    next_cycle_adjustments: tuple[tuple[str, str, Decimal], ...] = ()

    def is_trialing(self, now: datetime) -> bool:
        return (
            self.status == "active" and self.trial_ends_at is not None and now < self.trial_ends_at
        )

    def public_status(self, now: datetime) -> str:
        return "trialing" if self.is_trialing(now) else self.status

    @property
    def is_live(self) -> bool:
        return self.status in ("active", "past_due")

    @property
    def is_main(self) -> bool:
        return not self.add_on and not self.one_off


@_dict_record
@attrs.frozen(slots=False)
class CustomerState:
    """The aggregate: a customer with its products, balance rows and entities."""

    pk: str
    id: str | None
    created_at: datetime
    name: str | None = None
    email: str | None = None
    fingerprint: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    gateway_customer_id: str | None = None
    products: tuple[ProductState, ...] = ()
    rows: tuple[RowState, ...] = ()
    entities: tuple[EntityState, ...] = ()
    billing_controls: BillingControls = NO_CONTROLS
    #: Open locks and usage-window counters (BC3, BC5).
    control_state: ControlState = NO_STATE
    #: Incremented by the store on every save; lets stores cache parsed aggregates.
    version: int = 0

    @derived
    def expiry_points(self) -> tuple[datetime, ...]:
        """The instants a row or a rollover of this state expires, sorted.

        Between two of them the live rows of this (immutable) state do not change, so a view
        derived from them can be reused for any ``now`` in that window (``app.views.memoized``).
        """
        points = {r.expires_at for r in self.rows if r.expires_at is not None}
        for r in self.rows:
            points.update(ro.expires_at for ro in r.rollovers if ro.expires_at is not None)
        return tuple(sorted(points))

    @derived
    def read_memo(self) -> dict[Any, tuple[datetime, datetime, Any]]:
        """Views derived from this state: key -> (valid from, valid until, value)."""
        return {}

    @derived
    def due_at(self) -> datetime | None:
        """When lazy work is next due (``rules.due.next_due_at``, or a lock's expiry, BC5),
        computed once per state."""
        due = next_due_at(self)
        expiry = self.control_state.due
        if expiry is not None and (due is None or expiry < due):
            return expiry
        return due

    def entity(self, entity_id: str) -> EntityState | None:
        for e in self.entities:
            if e.id == entity_id:
                return e
        return None

    def product_instance(self, instance_id: str) -> ProductState | None:
        for p in self.products:
            if p.instance_id == instance_id:
                return p
        return None


#: Derived values of a customer that depend only on its dates (never on balances or version).
_DATED = ("due_at", "expiry_points")


def saved_as(state: CustomerState, version: int) -> CustomerState:
    """``state`` as a store keeps it after a save: the same content at a new version, keeping
    the derived values that depend on the content only (the read memo starts empty)."""
    return _copy(state, "version", version, keep_dated=True)


def with_rows(state: CustomerState, changed: Mapping[str, RowState]) -> CustomerState:
    """The customer with some rows replaced (by id). When every replacement keeps its row's
    dates (a deduction moves balances only), the date-derived values carry over."""
    if not changed:
        return state
    rows = []
    dated = True
    for r in state.rows:
        swap = changed.get(r.id)
        if swap is None:
            rows.append(r)
        else:
            rows.append(swap)
            dated = dated and _same_dates(r, swap)
    return _copy(state, "rows", tuple(rows), keep_dated=dated)


def with_rows_held(
    state: CustomerState, changed: Mapping[str, RowState], control_state: ControlState
) -> CustomerState:
    """The customer with some rows' balances replaced (by id; their dates kept) and new control
    state: a lock's hold taken or given back, in one copy. The date-derived values carry over
    when the holds' due time did not move."""
    if not changed:
        return with_control_state(state, control_state)
    rows = tuple(changed.get(r.id, r) for r in state.rows)
    new = _copy(
        state,
        "control_state",
        control_state,
        keep_dated=control_state.due == state.control_state.due,
    )
    new.__dict__["rows"] = rows
    return new


def with_control_state(state: CustomerState, control_state: ControlState) -> CustomerState:
    """The customer with new control state (holds, windows): the derived due time carries
    over when the holds' due time did not move."""
    return _copy(
        state,
        "control_state",
        control_state,
        keep_dated=control_state.due == state.control_state.due,
    )


def _copy(state: CustomerState, name: str, value: Any, *, keep_dated: bool) -> CustomerState:
    """``replace(state, name=value)`` in one dict copy, keeping the dated derived values."""
    values = state.__dict__.copy()
    values[name] = value
    for derived_name in _CACHED[CustomerState][1]:
        if derived_name in values and not (keep_dated and derived_name in _DATED):
            del values[derived_name]
    new = object.__new__(CustomerState)
    object.__setattr__(new, "__dict__", values)
    return new


def _same_dates(old: RowState, new: RowState) -> bool:
    return (
        old.next_reset_at == new.next_reset_at
        and old.expires_at == new.expires_at
        and old.renews_with_product == new.renews_with_product
        and (
            old.rollovers is new.rollovers
            or [r.expires_at for r in old.rollovers] == [r.expires_at for r in new.rollovers]
        )
    )


def with_balance(row: RowState, balance: Decimal) -> RowState:
    """``replace(row, balance=balance)`` in one dict copy: what a deduction does to a row."""
    values = row.__dict__.copy()
    for name in _CACHED[RowState][1]:  # derived values (``public`` shows the balance)
        values.pop(name, None)
    values["balance"] = balance
    new = object.__new__(RowState)
    object.__setattr__(new, "__dict__", values)
    return new


def with_version(state: CustomerState, version: int) -> CustomerState:
    """``replace(state, version=version)`` that keeps the derived values (none of them reads
    the version): the state a store holds after saving ``state``."""
    new = object.__new__(CustomerState)
    new.__dict__.update(state.__dict__)
    new.__dict__["version"] = version
    return new


@attrs.frozen(slots=False)  # built on every call: a dict __init__ is cheaper
class EventRecord:
    id: str
    customer_pk: str
    entity_id: str | None
    feature_id: str | None
    event_name: str | None
    value: Decimal
    properties: Mapping[str, Any]
    timestamp: datetime
    created_at: datetime


@attrs.frozen
class InvoiceLineRecord:
    description: str
    amount: Decimal
    product_id: str | None = None
    feature_id: str | None = None
    quantity: Decimal = Decimal(1)
    period_start: datetime | None = None
    period_end: datetime | None = None


@attrs.frozen
class InvoiceRecord:
    id: str
    customer_pk: str
    status: str
    total: Decimal
    currency: str
    lines: tuple[InvoiceLineRecord, ...]
    created_at: datetime
    gateway_invoice_id: str | None = None
    #: The customer-product instance this invoice charges, if any (renewals, attaches).
    cp_id: str | None = None


@attrs.frozen
class IdempotencyRecord:
    operation: str
    customer_pk: str
    key: str
    fingerprint: str
    result: Mapping[str, Any]
    created_at: datetime


@attrs.frozen
class ProductVersionRecord:
    product_id: str
    version: int
    definition: str
    created_at: datetime


@attrs.frozen(slots=False)  # built on every reserve and settle: a dict __init__ is cheaper
class PendingRecord:
    """A stored plan waiting on the gateway (checkout) or on recovery (operations)."""

    key: str
    customer_pk: str
    kind: str
    payload: Mapping[str, Any]
    created_at: datetime
