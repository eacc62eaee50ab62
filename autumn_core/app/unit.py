"""A running use case: one store transaction, the instant it runs at, and the customers it touched."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from random import getrandbits
from typing import Any, ClassVar, Protocol, TypeVar

import attrs

from autumn_core.app.context import Context
from autumn_core.app.product_changes import change_events
from autumn_core.app.topup_triggers import arm
from autumn_core.changes import CustomerChange
from autumn_core.errors import (
    CustomerNotFound,
    EntityNotFound,
    IdempotencyConflict,
    InvalidRequest,
    StoreError,
)
from autumn_core.model import (
    CustomerState,
    EventRecord,
    IdempotencyRecord,
    InvoiceRecord,
    ProductState,
)
from autumn_core.outbound import CUSTOMER_PRODUCTS_UPDATED, OutboundEvent, OutboxEntry
from autumn_core.ports import StoreTransaction
from autumn_core.results import ByEmail, CustomerData
from autumn_core.values import check_email, check_id

#: How long an idempotency key is remembered (docs/rules.md I1): decided here, once; stores
#: are told which records have expired (``put_idempotency(expired=...)``).
IDEMPOTENCY_TTL = timedelta(hours=24)
_H = TypeVar("_H")


class NeedsWrite(Exception):
    """Raised inside a read transaction that must write (an auto-created customer)."""


class DueWork(Protocol):
    """Lazy work: ``state`` with everything due by ``unit.now`` applied (``app/lazy.py``)."""

    def __call__(self, unit: Unit, state: CustomerState, /) -> CustomerState: ...


class CustomerMaker(Protocol):
    """Creates a missing customer for the calls that auto-create (``app/customers.py``)."""

    def __call__(self, unit: Unit, ref: Any, data: CustomerData, /) -> CustomerState: ...


def require_entity(state: CustomerState, entity_id: str) -> None:
    check_id(entity_id, "entity id")
    if state.entity(entity_id) is None:
        raise EntityNotFound(f"entity {entity_id!r} does not exist for customer {state.id!r}")


class Unit:
    """The unit of work: the lowest application layer. It imports no use case; lazy work and
    customer creation come from the layer above, installed by the composition root
    (``Unit.install``, called by the facade)."""

    _due_work: ClassVar[DueWork | None] = None
    _make_customer: ClassVar[CustomerMaker | None] = None

    @classmethod
    def install(cls, *, due_work: DueWork, make_customer: CustomerMaker) -> None:
        cls._due_work = due_work
        cls._make_customer = make_customer

    def __init__(self, ctx: Context, tx: StoreTransaction, *, write: bool) -> None:
        self.ctx = ctx
        self.tx = tx
        self.write = write
        self.now: datetime = ctx.clock.now()
        #: pk -> the customer as stored (a save's base).
        self._loaded: dict[str, CustomerState] = {}
        #: pk -> the customer as stored with its due lazy work applied (what a write starts
        #: from: a crossing is judged from here, TU1).
        self._worked: dict[str, CustomerState] = {}
        self._current: dict[str, CustomerState] = {}
        #: Customers inserted since the last flush: their first products are news (EO6).
        self._born: set[str] = set()
        #: pk -> the version this unit's last save gave the customer (its next change's base).
        self._saved: dict[str, int] = {}
        self._pks: dict[str, str] = {}
        self.events: list[EventRecord] = []
        self.invoices: list[InvoiceRecord] = []
        #: Outgoing events of this unit, written to the outbox with its changes (EO2).
        self.outbound: list[OutboundEvent] = []
        #: Auto top-up triggers this unit wrote (TU1): run by the facade once it has committed.
        self.armed_topups: list[str] = []

    # -- customers --------------------------------------------------------------------------
    def find(self, ref: Any) -> CustomerState | None:
        """The customer addressed by an id or ``ByEmail``, with due lazy work applied."""
        if isinstance(ref, ByEmail):
            state = self._by_email(ref.email)
        else:
            # Ids were validated by the public call before the transaction began. A batch
            # (track_many) addresses one customer many times: look its pk up once.
            pk = self._pks.get(ref)
            if pk is None:
                pk = self.tx.customer_pk(ref)
                if pk is not None:
                    self._pks[ref] = pk
            return self._load(pk) if pk is not None else None
        if state is None:
            return None
        return self.current(state.pk)

    def get(self, ref: Any) -> CustomerState:
        state = self.find(ref)
        if state is None:
            raise CustomerNotFound(f"customer {_describe(ref)} does not exist")
        return state

    def get_or_create(self, ref: Any, customer_data: CustomerData | None) -> CustomerState:
        """C8: the calls that auto-create a missing customer (never through ``ByEmail``)."""
        if customer_data is not None and not isinstance(customer_data, CustomerData):
            raise InvalidRequest(f"customer_data must be a CustomerData, got {customer_data!r}")
        state = self.find(ref)
        if state is not None:
            return state
        if isinstance(ref, ByEmail) or not self.ctx.auto_create:
            raise CustomerNotFound(f"customer {_describe(ref)} does not exist")
        if not self.write:
            raise NeedsWrite
        return _installed(Unit._make_customer)(self, ref, customer_data or CustomerData())

    def pk_of(self, ref: Any) -> str | None:
        """The pk of the customer addressed by an id or ``ByEmail``, without loading it (so
        without lazy work): an idempotent replay answers before anything else runs."""
        if isinstance(ref, ByEmail):
            found = self.tx.customers_by_email(ref.email)
            idless = [c for c in found if c.id is None]
            pick = idless or found
            return pick[0].pk if len(pick) == 1 or idless else None
        return self.tx.customer_pk(ref)

    def _by_email(self, email: str) -> CustomerState | None:
        check_email(email)
        found = self.tx.customers_by_email(email)
        idless = [c for c in found if c.id is None]
        if idless:
            return self._load(idless[0].pk)
        if len(found) > 1:
            raise InvalidRequest(f"several customers have the email {email!r}")
        return self._load(found[0].pk) if found else None

    def _load(self, pk: str) -> CustomerState | None:
        if pk in self._current:
            return self._current[pk]
        state = self.tx.load_customer(pk, for_update=self.write)
        if state is None:
            return None
        self._loaded[pk] = state
        self._current[pk] = state
        due = state.due_at
        if due is not None and due <= self.now:
            # A read applies the same lazy work as a projection that is never saved: it
            # claims, invoices and charges nothing (a read never moves money, S4).
            self._current[pk] = _installed(Unit._due_work)(self, state)
        self._worked[pk] = self._current[pk]
        return self._current[pk]

    def find_pk_or_none(self, pk: str) -> CustomerState | None:
        return self._load(pk)

    def find_pk(self, pk: str) -> CustomerState:
        state = self._load(pk)
        if state is None:
            raise CustomerNotFound(f"customer {pk!r} vanished during the call")
        return state

    def changed(self, pk: str) -> bool:
        """Whether this unit changed the customer (lazy work included) since it was loaded."""
        return pk in self._current and self._current[pk] is not self._loaded.get(pk)

    def current(self, pk: str) -> CustomerState:
        return self._current[pk]

    def put(self, state: CustomerState) -> CustomerState:
        if not self.write:
            raise NeedsWrite
        previous = self._current.get(state.pk)
        if previous is not None and previous.id != state.id:
            self._pks.clear()  # a rename (or a claim) moves the id
        self._current[state.pk] = state
        return state

    def insert(self, state: CustomerState) -> CustomerState:
        if not self.write:
            raise NeedsWrite
        self.tx.insert_customer(state)
        self._born.add(state.pk)
        self._loaded[state.pk] = attrs.evolve(state, version=1)
        self._worked[state.pk] = self._current[state.pk] = state
        return state

    def forget(self, pk: str) -> None:
        self._pks.clear()
        self._loaded.pop(pk, None)
        self._worked.pop(pk, None)
        self._current.pop(pk, None)
        self._born.discard(pk)
        self._saved.pop(pk, None)

    def entity_check(self, state: CustomerState, entity_id: str | None) -> None:
        if entity_id is not None:
            require_entity(state, entity_id)

    # -- idempotency ------------------------------------------------------------------------
    def replay(
        self, operation: str, pk: str, key: str | None, fingerprint: str
    ) -> Mapping[str, Any] | None:
        if key is None:
            return None
        rec = self.tx.get_idempotency(operation, pk, key)
        if rec is None or self.now - rec.created_at >= IDEMPOTENCY_TTL:
            return None
        if rec.fingerprint != fingerprint:
            raise IdempotencyConflict(f"idempotency key {key!r} was used with different arguments")
        return rec.result

    def remember(
        self, operation: str, pk: str, key: str | None, fingerprint: str, result: Mapping[str, Any]
    ) -> None:
        if key is None:
            return
        self.tx.put_idempotency(
            IdempotencyRecord(operation, pk, key, fingerprint, dict(result), self.now),
            expired=self.now - IDEMPOTENCY_TTL,
        )

    # -- events out -------------------------------------------------------------------------
    def emit(
        self,
        event_type: str,
        data: Mapping[str, Any] | None = None,
        *,
        customer_id: str | None,
        entity_id: str | None = None,
    ) -> OutboundEvent:
        """Record an outgoing event of this unit (EO2): it is written in the same transaction
        as the unit's changes, so it exists exactly when they do. A run that is re-run (a lost
        race, an operation resumed after its gateway call) emits afresh; what a rolled-back run
        emitted is gone with it."""
        if not self.write:
            raise NeedsWrite
        event = OutboundEvent(
            id=OutboundEvent.new_id(),
            type=event_type,
            customer_id=customer_id,
            entity_id=entity_id,
            occurred_at=self.now,
            data=data or {},
        )
        self.outbound.append(event)
        return event

    # -- commit -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Save every changed customer, then the events, invoices and outgoing events (EO2) of
        this unit."""
        for pk, state in self._current.items():
            before = self._loaded.get(pk)
            if before is None:
                continue
            if pk in self._born:
                self._products_changed(state, ())
            elif state.products is not before.products:
                self._products_changed(state, before.products)
            if state.billing_controls.auto_topups and (state is not before or pk in self._born):
                born = pk in self._born
                # Judged from the state the write started from: a reset its lazy work applied
                # took the balance back above the threshold before the write took it below.
                start = self._worked.get(pk, before)
                self.armed_topups += arm(
                    self.ctx, self.tx, None if born else start, state, self.now
                )
            if state is not before:
                change = CustomerChange.since(before, state, self._saved.get(pk, before.version))
                self.tx.save_customer(change)
                self._loaded[pk] = self._worked[pk] = state
                self._saved[pk] = change.base_version + 1
        self._born.clear()
        if self.events:
            self.tx.append_events(self.events)
            self.events = []
        for inv in self.invoices:
            self.tx.save_invoice(inv)
        self.invoices = []
        if self.outbound:
            self.tx.append_outbox([OutboxEntry(event) for event in self.outbound])
            self.outbound = []

    def _products_changed(self, state: CustomerState, before: Sequence[ProductState]) -> None:
        """EO6: one ``customer.products.updated`` per product this unit changed."""
        if not self.write or state.products == before:
            return
        for entity_id, data in change_events(self.ctx, before, state.products, self.now):
            self.emit(CUSTOMER_PRODUCTS_UPDATED, data, customer_id=state.id, entity_id=entity_id)

    def event_id(self) -> str:
        """A unique id that sorts by creation time: wall-clock microseconds, then 64 random
        bits. Stores index event ids, and growing ids land at the end of the index instead of
        on a random page of it. The wall clock only orders ids (it is not the domain's time,
        which comes from the injected clock); the random bits alone keep them unique (``random``
        is seeded from the OS at import and again in every forked child)."""
        return f"evt_{time.time_ns() // 1000 << 64 | getrandbits(64):030x}"  # one format


def _installed(hook: _H | None) -> _H:
    if hook is None:
        raise StoreError("the unit of work is not wired: build an Autumn (it installs lazy work)")
    return hook


def _describe(ref: Any) -> str:
    if isinstance(ref, ByEmail):
        return f"with email {ref.email!r}"
    return repr(ref)


def args_fingerprint(args: Mapping[str, Any]) -> str:
    """Normalise arguments so that 25.5, "25.5" and Decimal("25.5") compare equal (I2)."""
    return hashlib.sha256(
        json.dumps(_normal(args), sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _normal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return "d:" + format(value.normalize(), "f") if value.is_finite() else str(value)
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    if isinstance(value, datetime):
        return "t:" + value.isoformat()
    if attrs.has(type(value)):
        return _normal(attrs.asdict(value, recurse=False))
    if value is None or isinstance(value, bool | int | str | float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return "d:" + format(Decimal(str(value)).normalize(), "f")
        return value
    raise StoreError(f"cannot normalise argument {value!r}")
