"""The operation saga: "charge, then commit", with a durable record in between.

A use case run under an operation ``Driver`` (attach, cancel: see ``drive``) does not call the
gateway for its own charge inside its transaction: ``charge`` raises ``ChargeDeferred`` with the
planned request, the transaction rolls back, a short transaction commits a pending operation
record (kind ``"operation"``) holding that request, the gateway is called with the record's key,
and the use case runs again with the outcome, committing the local effect and deleting the record
in one transaction. A process killed anywhere in between leaves either nothing or the record,
which ``Autumn.recover()`` completes or rolls back with the same gateway key, so the provider
never charges twice.

Charges made by work that runs outside a driver (renewals and seat changes reached from
check/track lazy work) are sent inside their transaction with a key that is deterministic for
that attempt (the renewal period, the customer's version), so a re-run is replayed by the
gateway. With ``gateway=None`` invoices are only recorded locally, as paid (CO1).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, TypeVar

import attrs

from autumn_core.app.context import Context
from autumn_core.app.unit import Unit
from autumn_core.errors import GatewayError
from autumn_core.model import CustomerState, InvoiceLineRecord, PendingRecord
from autumn_core.ports import ChargeLookup, ChargeOutcome, ChargeRequest
from autumn_core.serialization import converter

#: ``PendingRecord.kind`` of an in-flight gateway operation.
OPERATION = "operation"
#: How many charges one public call may defer in turn (normally one).
MAX_DEFERRALS = 4
#: How long (wall clock) a paid operation waits for another in-flight one on the same customer.
IN_FLIGHT_WAIT_S = 5.0
#: An operation record older than this (by the injected clock) belongs to a process that died:
#: ``recover()`` settles it, and new operations of the customer no longer wait for it.
STALE_AFTER = timedelta(minutes=10)

T = TypeVar("T")


def pending_key(key: str) -> str:
    """The pending record's key for a charge key (bounded: store keys are indexed)."""
    if len(key) <= 200:
        return "op:" + key
    return "op:h:" + hashlib.sha256(key.encode()).hexdigest()


@attrs.frozen
class Resolved:
    request: ChargeRequest
    outcome: ChargeOutcome


@attrs.define
class Driver:
    """One public call's operation: which charge keys it defers, what the gateway answered.

    ``payload`` describes how to run the operation again (``recover`` uses it), ``now`` pins
    the clock across the call's runs so a prorated amount is planned the same each time.
    """

    now: datetime
    prefixes: tuple[str, ...]
    payload: dict[str, Any]
    #: The customer to create when the first run created it (auto-create), as (ref, data).
    customer_ref: Any = None
    customer_data: Any = None
    resolved: dict[str, Resolved] = attrs.field(factory=dict)
    consumed: set[str] = attrs.field(factory=set)
    memo: dict[str, Any] = attrs.field(factory=dict)

    def owns(self, key: str) -> bool:
        return key.startswith(self.prefixes)


_DRIVER: ContextVar[Driver | None] = ContextVar("autumn_driver", default=None)


def driven() -> Driver | None:
    return _DRIVER.get()


class ChargeDeferred(Exception):
    """Raised by ``charge`` under a driver: roll back, record, charge, run again."""

    def __init__(
        self,
        *,
        key: str,
        pending_key: str,
        request: ChargeRequest,
        lines: tuple[InvoiceLineRecord, ...],
        customer_pk: str,
        customer_id: str | None,
        gateway_customer_id: str,
        resumed: bool,
    ) -> None:
        super().__init__(key)
        self.key = key
        self.pending_key = pending_key
        self.request = request
        self.lines = lines
        self.customer_pk = customer_pk
        self.customer_id = customer_id
        self.gateway_customer_id = gateway_customer_id
        self.resumed = resumed


class _InFlight(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _run(ctx: Context, drv: Driver, body: Callable[[Unit], T]) -> T:
    def run(tx: Any) -> T:
        unit = Unit(ctx, tx, write=True)
        unit.now = drv.now
        drv.consumed.clear()
        token = _DRIVER.set(drv)
        try:
            out = body(unit)
        finally:
            _DRIVER.reset(token)
        for key in drv.consumed:
            tx.delete_pending(pending_key(key))
        unit.flush()
        return out

    return ctx.run(run, write=True)


def _record(ctx: Context, drv: Driver, d: ChargeDeferred) -> ChargeRequest:
    """The short transaction before the gateway call: the pending record (and the customer
    with its provider id, so the next run makes no second provider customer)."""

    def run(tx: Any) -> ChargeRequest:
        unit = Unit(ctx, tx, write=True)
        unit.now = drv.now
        state: CustomerState | None = None
        if tx.load_customer(d.customer_pk) is not None:
            state = unit.find_pk(d.customer_pk)
        elif d.customer_id is not None:
            state = unit.get_or_create(d.customer_id, drv.customer_data)
        else:
            raise GatewayError(f"customer {d.customer_pk!r} vanished before its charge")
        # This operation's own earlier charges (a cancel of two paid instances) are not others.
        own = {d.pending_key, *(pending_key(k) for k in drv.resolved)}
        others = [
            r.key
            for r in tx.list_pending(OPERATION)
            if r.customer_pk == state.pk
            and r.key not in own
            and unit.now - r.created_at < STALE_AFTER
        ]
        if others:
            raise _InFlight(others[0])
        request = d.request
        if tx.get_pending(d.pending_key) is None:
            request = attrs.evolve(
                request, metadata={**request.metadata, "autumn_customer_pk": state.pk}
            )
            payload = {
                **drv.payload,
                "charge_key": d.key,
                "request": converter.unstructure(request),
                "lines": converter.unstructure(list(d.lines)),
            }
            tx.put_pending(PendingRecord(d.pending_key, state.pk, OPERATION, payload, unit.now))
        if state.gateway_customer_id is None:
            unit.put(attrs.evolve(state, gateway_customer_id=d.gateway_customer_id))
        unit.flush()
        return request

    return ctx.run(run, write=True)


def _drop(ctx: Context, key: str) -> None:
    ctx.run(lambda tx: tx.delete_pending(key), write=True)


def find_charge(ctx: Context, request: ChargeRequest) -> ChargeOutcome | None:
    """What became of a sent charge: asked without charging when the gateway can tell,
    otherwise re-driven with the same key (the gateway replays the first outcome)."""
    gateway = ctx.gateway
    assert gateway is not None
    if isinstance(gateway, ChargeLookup):
        return gateway.find_charge(request)
    return gateway.charge(request)


def drive(ctx: Context, drv: Driver, body: Callable[[Unit], T]) -> T:
    """Run ``body`` as one operation: deferred charges are recorded, sent, then committed."""
    gateway = ctx.gateway
    deadline = time.monotonic() + IN_FLIGHT_WAIT_S
    while True:
        try:
            return _run(ctx, drv, body)
        except ChargeDeferred as d:
            deferred = d
        except BaseException:
            _settle_failed(ctx, drv)
            raise
        assert gateway is not None
        try:
            request = _record(ctx, drv, deferred)
        except _InFlight as busy:
            if time.monotonic() > deadline:
                raise GatewayError(
                    f"payment operation {busy.key!r} for this customer is still pending; "
                    "retry later, or call recover() if its process died"
                ) from None
            time.sleep(0.02)
            continue
        try:
            outcome = gateway.charge(request)
        except GatewayError:
            # Maybe sent, maybe not: ask, so a charge that never arrived blocks nothing.
            # Only a provider that answers "never received" lets the record go; when it
            # cannot be asked, the record stays for recover().
            if isinstance(gateway, ChargeLookup):
                try:
                    never_arrived = gateway.find_charge(request) is None
                except GatewayError:
                    never_arrived = False
                if never_arrived:
                    _drop(ctx, deferred.pending_key)
            raise
        drv.resolved[deferred.key] = Resolved(request, outcome)
        if len(drv.resolved) > MAX_DEFERRALS:  # pragma: no cover - a use case bug
            raise GatewayError("an operation deferred too many charges")


def _settle_failed(ctx: Context, drv: Driver) -> None:
    """The run after a charge raised: a refused charge's record goes (nothing happened);
    a collected one stays for ``recover()`` (money moved, the local effect did not land)."""
    for key, done in drv.resolved.items():
        if done.outcome.status == "failed":
            _drop(ctx, pending_key(key))
