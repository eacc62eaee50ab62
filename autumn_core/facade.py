"""The facade: ``Autumn``, the one object users hold, and ``open()`` by URL."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, TypeVar

from autumn_core.app import customers as customers_uc
from autumn_core.app import lazy as lazy_uc
from autumn_core.app import locks as locks_uc
from autumn_core.app import topups, trial_notices
from autumn_core.app import usage as usage_uc
from autumn_core.app.context import Context, Options
from autumn_core.app.unit import NeedsWrite, Unit
from autumn_core.app.views import customer_view
from autumn_core.catalog import Catalog
from autumn_core.clock import Clock, SystemClock
from autumn_core.errors import InvalidRequest
from autumn_core.facade_history import Events, Invoices
from autumn_core.facade_lifecycle import LifecycleMixin
from autumn_core.facade_parts import (
    Balances,
    Customers,
    Entities,
    Products,
)
from autumn_core.facade_webhooks import Webhooks
from autumn_core.ports import Gateway, Store, StoreTransaction
from autumn_core.results import (
    CheckResult,
    Customer,
    CustomerData,
    TrackRequest,
    TrackResult,
)
from autumn_core.values import (
    CheckedClock,
    check_key,
    check_metadata,
)

T = TypeVar("T")

# The composition root wires the layer above the unit of work into it (ARCHITECTURE.md).
Unit.install(due_work=lazy_uc.apply_due, make_customer=customers_uc.get_or_create)


def _properties(value: Any) -> Any:
    """Event properties: a checked JSON copy (a non-dict is left for the use case to refuse)."""
    if value is None:
        return None  # the common case, before the slower isinstance against an ABC
    if isinstance(value, Mapping):
        return check_metadata(value, "properties")
    return value


class Autumn(LifecycleMixin):
    """An embedded billing engine over a store, a payment provider and a clock.

    Example:
        ```python
        billing = Autumn(catalog, store=SqliteStore("billing.db"), gateway=MemoryGateway())
        with Autumn(catalog, store=MemoryStore()) as billing:
            billing.customers.create("user-1")
        ```
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        store: Store,
        gateway: Gateway | None = None,
        clock: Clock | None = None,
        auto_create_customers: bool = True,
        options: Any = None,
    ) -> None:
        if not isinstance(catalog, Catalog):
            raise InvalidRequest(f"catalog must be a Catalog, got {catalog!r}")
        clock = clock or SystemClock()
        self._ctx = Context(
            catalog,
            store,
            gateway,
            CheckedClock(clock),  # a clock past MAX_INSTANT is refused before any store sees it
            Options.coerce(options),
            bool(auto_create_customers),
        )
        self.catalog = catalog
        self.store = store
        self.gateway = gateway
        self.clock = clock
        self.customers = Customers(self)
        self.balances = Balances(self)
        self.entities = Entities(self)
        self.events = Events(self)
        self.invoices = Invoices(self)
        self.webhooks = Webhooks(self._ctx)
        self.products = Products(self)
        now = self._ctx.clock.now()
        self._ctx.run(lambda tx: self._ctx.registry.sync(tx, now), write=True)

    # -- running use cases ------------------------------------------------------------------
    def _write(self, body: Callable[[Unit], T], *, optimistic: bool = False) -> T:
        ctx = self._ctx

        def run(tx: StoreTransaction) -> tuple[T, list[str]]:
            unit = Unit(ctx, tx, write=True)
            out = body(unit)
            unit.flush()
            return out, unit.armed_topups  # the committed run's (a re-run replaces a lost one)

        out, armed = ctx.run(run, write=True, optimistic=optimistic)
        if armed:
            topups.run_armed(ctx, armed)  # TU2: after the commit, outside it
        return out

    def _read(self, body: Callable[[Unit], T]) -> T:
        """A read transaction; one that must auto-create a customer is re-run as a write.

        Lazy work due by now is applied to what a read returns but never recorded: a read
        claims, invoices and charges nothing (``app/renewals.settles``)."""
        ctx = self._ctx
        try:
            return ctx.run(lambda tx: body(Unit(ctx, tx, write=False)), write=False)
        except NeedsWrite:
            return self._write(body)

    def _view(self, unit: Unit, pk: str) -> Customer:
        return customer_view(self._ctx, unit.current(pk), unit.now)

    # -- check and track --------------------------------------------------------------------
    def check(
        self,
        customer_id: Any,
        feature_id: str,
        *,
        required_balance: Any = 1,
        entity_id: str | None = None,
        send_event: bool = False,
        customer_data: CustomerData | None = None,
        lock: Mapping[str, Any] | None = None,
    ) -> CheckResult:
        """May the customer use ``required_balance`` of the feature now? Reads only, unless
        ``send_event=True`` (then the deduction is made atomically with the decision) or a
        ``lock`` is given: Autumn's ``{"lock_id", "expires_at", "overage_behavior"}`` holds the
        amount until ``balances.finalize`` (at most 24 h; the default).

        Example:
            ```python
            if billing.check("user-1", "messages", required_balance=5).allowed:
                billing.track("user-1", "messages", value=5)
            held = billing.check("user-1", "tokens", required_balance=4000, lock={"lock_id": "job-1"})
            if held.allowed:
                billing.balances.finalize("job-1", "confirm", override_value=743)
            ```
        """
        args = usage_uc.validate_check(
            self._ctx,
            customer_id,
            feature_id,
            required_balance,
            entity_id,
            send_event,
            customer_data,
        )
        lock_args = locks_uc.validate_lock(lock)
        if lock_args is not None:
            if send_event:
                raise InvalidRequest("give send_event or lock, not both: a lock records on confirm")
            # Decided from one customer, like a track: optimistic where the store can (a lost
            # race, or a lock id taken meanwhile, runs the call again, locking).
            return self._write(
                lambda unit: locks_uc.check_with_lock(unit, args, lock_args), optimistic=True
            )
        if send_event:
            return self._write(lambda unit: usage_uc.check(unit, args), optimistic=True)
        try:
            return self._ctx.run(lambda tx: usage_uc.check_stored(self._ctx, tx, args), write=False)
        except NeedsWrite:
            return self._write(lambda unit: usage_uc.check(unit, args))

    def track(
        self,
        customer_id: Any,
        feature_id: str | None = None,
        *,
        event_name: str | None = None,
        value: Any = 1,
        entity_id: str | None = None,
        idempotency_key: str | None = None,
        properties: dict[str, Any] | None = None,
        timestamp: datetime | None = None,
        overage: str = "cap",
        customer_data: CustomerData | None = None,
    ) -> TrackResult:
        """Record usage of a feature, or an event features listen to (exactly one of the two).

        Negative values refund. ``overage`` is ``"cap"`` (drop what does not fit), ``"reject"``
        (``InsufficientBalance``, nothing changes) or ``"overflow"``. An ``idempotency_key`` makes a
        retry within 24 h return the first result.

        Example:
            ```python
            billing.track("user-1", "messages", value=3)
            billing.track("user-1", event_name="chat", idempotency_key="msg-42")
            billing.track("user-1", "messages", value=-1)   # a refund
            ```
        """
        args = usage_uc.validate_track(
            self._ctx,
            customer_id,
            feature_id,
            event_name=event_name,
            value=value,
            entity_id=entity_id,
            idempotency_key=check_key(idempotency_key, "idempotency_key"),
            properties=_properties(properties),
            timestamp=timestamp,
            overage=overage,
            customer_data=customer_data,
        )
        # A track decides from one customer: on a store that can, it reads without locking
        # and the save verifies nobody saved the customer meanwhile (``ports.OptimisticStore``).
        return self._write(lambda unit: usage_uc.track(unit, args), optimistic=True)

    def track_many(self, events: Iterable[TrackRequest]) -> list[TrackResult]:
        """Record many tracks in one transaction (all or nothing).

        Example:
            ```python
            from autumn_core import TrackRequest

            billing.track_many([TrackRequest("user-1", "messages", value=2), TrackRequest("user-2", "messages")])
            ```
        """
        if isinstance(events, str | bytes | dict) or not isinstance(events, Iterable):
            raise InvalidRequest(f"track_many takes an iterable of TrackRequest, got {events!r}")
        requests = list(events)
        parsed = []
        for r in requests:
            if not isinstance(r, TrackRequest):
                raise InvalidRequest(f"track_many takes TrackRequest objects, got {r!r}")
            parsed.append(
                usage_uc.validate_track(
                    self._ctx,
                    r.customer_id,
                    r.feature_id,
                    event_name=r.event_name,
                    value=r.value,
                    entity_id=r.entity_id,
                    idempotency_key=check_key(r.idempotency_key, "idempotency_key"),
                    properties=_properties(r.properties),
                    timestamp=r.timestamp,
                    overage=r.overage,
                    customer_data=r.customer_data,
                )
            )

        def body(unit: Unit) -> list[TrackResult]:
            # Later items see earlier items' balances through the unit, and their idempotency
            # keys through the transaction (I4); the batch is saved once at the end.
            return [usage_uc.track(unit, args) for args in parsed]

        return self._write(body)

    # -- lifecycle --------------------------------------------------------------------------
    def process_due(self, *, limit: int | None = None) -> int:
        """Apply everything due by now for every customer; return how many customers changed.

        Then it runs the auto top-ups a crashed process left armed (TU2), emits the
        ``customer.trial_ending`` notices due (EO6), and delivers the outbox when there are
        subscribers (EO3); none of these count in the result.

        Example:
            ```python
            changed = billing.process_due()          # e.g. from a cron job or a scheduler
            billing.process_due(limit=500)           # at most 500 customers this call
            ```
        """
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise InvalidRequest(f"limit must be a positive integer, got {limit!r}")
        now = self._ctx.clock.now()
        pks = self._ctx.run(lambda tx: tx.due_customer_pks(now, limit), write=False)
        done = 0
        for pk in pks:

            def body(unit: Unit, pk: str = pk) -> bool:
                if unit.tx.load_customer(pk) is None:  # deleted since it was listed
                    return False
                unit.find_pk(pk)
                return unit.changed(pk)

            if self._write(body):
                done += 1
        topups.run_armed(self._ctx, topups.pending(self._ctx))  # TU2: what a crash left
        locks_uc.forget_old(self._ctx, now)  # BC5: the lock index forgets old locks
        notice = self.webhooks.trial_notice
        for pk in trial_notices.candidates(self._ctx, now, notice):
            self._write(trial_notices.notifier(pk, notice))
        if self.webhooks.subscriptions:
            self.webhooks.deliver()
        return done

    def close(self) -> None:
        """Release the store (connections, pools). ``with Autumn(...) as billing:`` closes too.

        Example:
            ```python
            billing.close()
            ```
        """
        self.store.close()

    def __enter__(self) -> Autumn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(
    url: str,
    *,
    catalog: Catalog,
    gateway: Gateway | None = None,
    clock: Clock | None = None,
    **kwargs: Any,
) -> Autumn:
    """Build an ``Autumn`` whose store is chosen by URL scheme (entry points ``autumn_core.stores``).

    Example:
        ```python
        from autumn_core import Catalog, open

        billing = open("sqlite:///billing.db", catalog=Catalog.from_file("autumn.toml"))
        billing = open("postgresql://app:secret@db/billing", catalog=catalog, timeout=5)
        ```
    """
    if not isinstance(url, str) or "://" not in url:
        raise InvalidRequest(f"store URL must look like scheme://..., got {url!r}")
    scheme = url.split("://", 1)[0]
    engine_kwargs = {k: kwargs.pop(k) for k in ("auto_create_customers", "options") if k in kwargs}
    store = _store_factory(scheme)(url, **kwargs)
    return Autumn(catalog, store=store, gateway=gateway, clock=clock, **engine_kwargs)


@functools.cache
def _store_factory(scheme: str) -> Callable[..., Store]:
    """The registered store factory for a URL scheme (scanning entry points once per scheme)."""
    for ep in entry_points(group="autumn_core.stores"):
        if ep.name == scheme:
            factory: Callable[..., Store] = ep.load()
            return factory
    raise InvalidRequest(f"no store is registered for URL scheme {scheme!r}")
