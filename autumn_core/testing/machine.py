"""A stateful model of any catalog: hypothesis drives the engine, the invariants watch it.

``catalog_machine(catalog)`` returns a ``RuleBasedStateMachine`` class whose rules are the
engine's calls on that catalog's products and features: customers with and without shared
fingerprints and emails, attach (upgrades, downgrades, add-ons, quantities, entities), cancel,
uncancel, track and check, entities, balance edits, clock moves across period and trial ends,
``process_due``, and replays of idempotency keys. After every step it checks:

- at most one trial per product per subject, and per fingerprint where the product says so;
- every row within its floor and ceiling; a track moves the balance by exactly what it applied
  (grants minus usage plus refunds), a grant by its amount, ``balances.set`` to its target;
- a row that resets holds its granted amount again;
- every accepted track is one event;
- every invoice totals its lines;
- the same idempotency key replays the same result and changes nothing;
- nothing changes after a refused call.

Subclass the returned class to add rules and invariants (``self.billing``, ``self.clock``,
``self.trials()``, ``self.fail(...)``), and expose ``TestX = X.TestCase`` to pytest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, cast

import attrs
from hypothesis import HealthCheck, currently_in_test_context, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from autumn_core.catalog import Catalog, Product
from autumn_core.clock import ManualClock
from autumn_core.errors import AutumnError, GatewayError, IdempotencyConflict, StoreError
from autumn_core.facade import Autumn
from autumn_core.ports import Gateway, Store
from autumn_core.results import ByEmail, Customer, CustomerData
from autumn_core.testing import invariants as inv
from autumn_core.testing import transcript as tr
from autumn_core.testing.stores import fresh_stores

IDEMPOTENCY_WINDOW = timedelta(hours=24)
#: Where every run starts: ``autumn_core.testing.START`` (kept here too: that package imports
#: this module).
START = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)


class InvariantBroken(AssertionError):
    """An invariant failed; the message ends with the calls that led there."""


@attrs.frozen
class Keyed:
    """A call made with an idempotency key, and what it returned the first time."""

    operation: str
    customer_id: str
    key: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    result: Any
    at: datetime


@attrs.define
class Outcome:
    result: Any = None
    error: AutumnError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class CatalogMachine(RuleBasedStateMachine):
    """The engine on one catalog, one store and one gateway; see the module docstring."""

    catalog: ClassVar[Catalog]
    store_factory: ClassVar[Callable[[], Store]]
    gateway_factory: ClassVar[Callable[[], Gateway | None] | None] = None
    gateway_source: ClassVar[str | None] = None
    start: ClassVar[datetime]
    #: The transcript of the last run (hypothesis replays the shortest failing run last).
    last_transcript: ClassVar[tr.Transcript | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(self.start)
        factory = type(self).gateway_factory
        self.gateway = factory() if factory is not None else None
        stores = type(self).store_factory
        self.billing = Autumn(self.catalog, store=stores(), gateway=self.gateway, clock=self.clock)
        #: Fingerprints get this suffix on stores where earlier trial claims survive.
        self.fp_suffix: str = getattr(stores, "namespace", "")
        self.transcript = tr.Transcript()
        type(self).last_transcript = self.transcript
        self._trials: dict[str, inv.Trial] = {}
        self._keyed: dict[tuple[str, str, str], Keyed] = {}
        #: customer pk -> accepted tracks (each must be one event).
        self._tracks: dict[str, int] = {}
        #: Rows a balance edit or a carry put outside their bounds on purpose.
        self._loose: set[str] = set()

    def teardown(self) -> None:
        self.billing.close()

    # -- for subclasses ---------------------------------------------------------------------
    def trials(self) -> list[inv.Trial]:
        """Every trial granted so far (expired products included), oldest first."""
        self._see_trials(inv.read_world(self.billing))
        return list(self._trials.values())

    def world(self) -> inv.World:
        """What the store holds now: every customer's state, invoices and event count."""
        return inv.read_world(self.billing)

    def fail(self, problem: str) -> None:
        """Raise ``InvariantBroken`` with ``problem`` and the calls that led there."""
        raise InvariantBroken(self.report(problem))

    def report(self, problem: str) -> str:
        calls = "\n".join(self.transcript.body())
        test = self.transcript.as_test(
            start=self.start, gateway=self.gateway_source, problem=problem
        )
        return (
            f"{problem}\n\nafter these {len(self.transcript)} calls on a fresh engine:\n"
            f"{calls}\n\nas a test:\n\n{test}\n"
        )

    def _note(self, source: str) -> None:
        if currently_in_test_context():
            note(source)

    # -- running calls ----------------------------------------------------------------------
    def call(
        self, source: str, fn: Callable[[], Any], subject: Any = None, before: Any = None
    ) -> Outcome:
        """Run one engine call, recorded in the transcript; a refused call must change nothing
        (``subject``: the customer id or ``ByEmail`` to compare; ``before``: its state if read)."""
        line = self.transcript.add(source)
        self._note(source)
        if subject is not None and before is None:
            before = inv.read_subject(self.billing, subject)
        try:
            return Outcome(result=fn())
        except (StoreError, GatewayError) as exc:
            self.fail(f"{source} failed inside the engine: {exc.code}: {exc}")
            raise  # unreachable
        except AutumnError as exc:
            line.raised = type(exc).__name__
            if subject is not None and inv.read_subject(self.billing, subject) != before:
                self.fail(f"{source} raised {type(exc).__name__} but changed the customer")
            return Outcome(error=exc)
        except InvariantBroken:
            raise
        except Exception as exc:
            self.fail(f"{source} raised {type(exc).__name__}: {exc}")
            raise  # unreachable

    def view(self, customer_id: str) -> Customer | None:
        """The customer as a read shows it now (due work applied, S4), or None."""
        try:
            return self.billing.customers.get(customer_id)
        except AutumnError:
            return None

    def total(self, customer_id: str, feature_id: str) -> tuple[Decimal, Decimal, bool] | None:
        """(Σ balances + Σ rollover balances, granted, unlimited) of the customer's view."""
        return inv.view_total(self.view(customer_id), feature_id)

    def keyed_call(
        self,
        operation: str,
        customer_id: str,
        key: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        run: Callable[[Any], Outcome],
    ) -> Outcome:
        """Run a call that may carry an idempotency key (I1-I3): a key seen within 24 h with
        the same arguments replays the first result and changes nothing; with other arguments
        it raises ``IdempotencyConflict``. ``run(before)`` makes the call."""
        before = inv.read_subject(self.billing, customer_id)
        seen = self._keyed.get((operation, customer_id, key)) if key is not None else None
        age = self.clock.now() - seen.at if seen is not None else None
        outcome = run(before)
        if seen is not None and age is not None and age < IDEMPOTENCY_WINDOW:
            same = seen.args == args and seen.kwargs == tuple(sorted(kwargs.items()))
            if same:
                if not outcome.ok:
                    self.fail(f"replaying key {key!r} raised {type(outcome.error).__name__}")
                if outcome.result != attrs.evolve(seen.result, replayed=True):
                    self.fail(
                        f"replaying key {key!r} returned {outcome.result!r}, "
                        f"not the first result {seen.result!r}"
                    )
                if inv.read_subject(self.billing, customer_id) != before:
                    self.fail(f"replaying key {key!r} changed the customer")
            elif not isinstance(outcome.error, IdempotencyConflict):
                self.fail(
                    f"key {key!r} reused with other arguments within 24 h did not raise "
                    "IdempotencyConflict"
                )
        if key is not None and outcome.ok and not outcome.result.replayed:
            self._keyed[(operation, customer_id, key)] = Keyed(
                operation,
                customer_id,
                key,
                args,
                tuple(sorted(kwargs.items())),
                outcome.result,
                self.clock.now(),
            )
        return outcome

    # -- the calls --------------------------------------------------------------------------
    def _fp(self, fp: str | None) -> str | None:
        if fp is None or not self.fp_suffix or fp.endswith(self.fp_suffix):
            return fp
        return fp + self.fp_suffix

    def do_create(self, customer_id: str | None, email: str | None, fp: str | None) -> None:
        kw: dict[str, Any] = {"email": email, "fingerprint": self._fp(fp)}
        args = (customer_id,) if customer_id is not None else ()
        self.call(
            tr.call("customers.create", *args, **kw),
            lambda: self.billing.customers.create(customer_id, **kw),
        )

    def do_attach(
        self,
        ref: Any,
        product_id: str,
        fp: str | None,
        entity_id: str | None,
        quantities: dict[str, Decimal] | None,
        key: str | None,
    ) -> None:
        fp = self._fp(fp)
        data = CustomerData(fingerprint=fp) if fp is not None else None
        kw: dict[str, Any] = {
            "entity_id": entity_id,
            "quantities": quantities,
            "customer_data": data,
            "idempotency_key": key,
        }
        kw = {k: v for k, v in kw.items() if v is not None}
        source = tr.call("attach", ref, product_id, **kw)

        def run(before: Any) -> Outcome:
            return self.call(
                source, lambda: self.billing.attach(ref, product_id, **kw), ref, before
            )

        if not isinstance(ref, str):
            run(None)
            return
        outcome = self.keyed_call("attach", ref, key, (product_id,), kw, run)
        if outcome.ok:
            self._loosen_carried(ref)

    def _loosen_carried(self, customer_id: str) -> None:
        # A5: an immediate switch carries allocated usage onto the new rows, which may leave
        # them below a prepaid floor; those rows are exempt until they reset.
        states = inv.read_subject(self.billing, customer_id)
        for state, _, _ in states:
            for row in state.rows:
                if row.allocated and row.balance < 0:
                    self._loose.add(row.id)

    def do_track(
        self,
        customer_id: str,
        feature_id: str | None,
        event_name: str | None,
        value: Decimal,
        overage: str,
        entity_id: str | None,
        key: str | None,
    ) -> None:
        kw: dict[str, Any] = {
            "event_name": event_name,
            "value": value,
            "entity_id": entity_id,
            "idempotency_key": key,
            "overage": overage if overage != "cap" else None,
        }
        kw = {k: v for k, v in kw.items() if v is not None}
        args = (customer_id, feature_id) if feature_id is not None else (customer_id,)
        source = tr.call("track", *args, **kw)
        before = self.view(customer_id)

        def run(state: Any) -> Outcome:
            return self.call(source, lambda: self.billing.track(*args, **kw), customer_id, state)

        outcome = self.keyed_call("track", customer_id, key, args, kw, run)
        if not outcome.ok or outcome.result.replayed:
            return
        pk = inv.read_subject(self.billing, customer_id)[0][0].pk
        self._tracks[pk] = self._tracks.get(pk, 0) + 1
        if before is None:
            return  # auto-created by this call: its defaults came with it
        after = self.view(customer_id)
        for fid, applied in outcome.result.applied.items():
            old = inv.view_total(before, fid)
            new = inv.view_total(after, fid)
            if old is None or new is None or old[2] or new[2]:
                continue  # no row, or an unlimited row counting usage
            if new[0] - old[0] != -applied:
                self.fail(
                    f"{source} applied {applied} to {fid!r} but its balance moved "
                    f"from {old[0]} to {new[0]}"
                )

    def do_check(
        self,
        customer_id: str,
        feature_id: str,
        required: Decimal,
        send_event: bool,
        entity_id: str | None,
    ) -> None:
        kw: dict[str, Any] = {
            "required_balance": required,
            "send_event": send_event or None,
            "entity_id": entity_id,
        }
        kw = {k: v for k, v in kw.items() if v is not None}
        outcome = self.call(
            tr.call("check", customer_id, feature_id, **kw),
            lambda: self.billing.check(customer_id, feature_id, **kw),
            subject=customer_id if send_event else None,
        )
        if outcome.ok and send_event and outcome.result.allowed:
            pk = inv.read_subject(self.billing, customer_id)[0][0].pk
            self._tracks[pk] = self._tracks.get(pk, 0) + 1

    def do_set(self, customer_id: str, feature_id: str, fraction: Decimal) -> None:
        got = self.total(customer_id, feature_id)
        if got is None or got[2]:
            return
        target = (max(got[0], Decimal(0)) * fraction).quantize(Decimal("0.01"))
        source = tr.call("balances.set", customer_id, feature_id, remaining=target)
        outcome = self.call(
            source,
            lambda: self.billing.balances.set(customer_id, feature_id, remaining=target),
            subject=customer_id,
        )
        if outcome.ok:
            now = self.total(customer_id, feature_id)
            if now is None or now[0] != target:
                self.fail(f"{source} left the balance at {now and now[0]}, not {target}")

    def do_grant(
        self, customer_id: str, feature_id: str, amount: Decimal, reset: str | None
    ) -> None:
        got = self.total(customer_id, feature_id)
        source = tr.call("balances.grant", customer_id, feature_id, amount, reset=reset)
        outcome = self.call(
            source,
            lambda: self.billing.balances.grant(customer_id, feature_id, amount, reset=reset),
            subject=customer_id,
        )
        if outcome.ok and got is not None and not got[2]:
            now = self.total(customer_id, feature_id)
            assert now is not None
            # A grant that makes the first customer-level rows of an allocated feature counts
            # the live entities of that feature as their usage (EN2): the balance moves by the
            # amount less at most that many.
            feature = self.catalog.feature(feature_id)
            counted = (
                sum(
                    1 for e in self.billing.entities.list(customer_id) if e.feature_id == feature_id
                )
                if feature is not None and feature.type == "allocated"
                else 0
            )
            moved = now[0] - got[0]
            if not (amount - counted <= moved <= amount) or now[1] - got[1] != amount:
                self.fail(
                    f"{source} moved the balance by {now[0] - got[0]} and the granted amount "
                    f"by {now[1] - got[1]}, not {amount} (less {counted} live entities at most)"
                )

    def do_advance(self, delta: timedelta) -> None:
        ids = [c.id for c in inv.read_world(self.billing).customers if c.id is not None]
        before = {cid: self.view(cid) for cid in ids}
        was = self.clock.now()
        self.transcript.add(tr.advance(delta))
        self._note(tr.advance(delta))
        self.clock.advance(seconds=int(delta.total_seconds()))
        for cid, old in before.items():
            if old is not None:
                self._check_resets(cid, old, self.view(cid), was)

    def _check_resets(
        self, customer_id: str, before: Customer, after: Customer | None, was: datetime
    ) -> None:
        """A row whose next reset moved on during a clock move holds its granted amount again
        (S5, S7), unless its product was trialing (T8: usage during a trial stays)."""
        if after is None:
            return
        products = [*before.products, *(p for e in before.entities for p in e.products)]
        trialing = {p.id for p in products if p.trial_ends_at is not None and p.trial_ends_at > was}
        old_rows = {r.id: r for b in before.features.values() for r in b.breakdown}
        for balance in after.features.values():
            for row in balance.breakdown:
                old = old_rows.get(row.id)
                if old is None or row.product_id in trialing or row.next_reset_at is None:
                    continue
                if old.next_reset_at is None or row.next_reset_at <= old.next_reset_at:
                    continue
                self._loose.discard(row.id)
                if row.balance != row.granted:
                    self.fail(
                        f"customer {customer_id!r}: the {row.feature_id} row of "
                        f"{row.product_id or 'a grant'} reset (next reset "
                        f"{old.next_reset_at} -> {row.next_reset_at}) to {row.balance}, "
                        f"not its granted {row.granted}"
                    )

    def do_advance_to_next(self) -> None:
        """Move the clock one second past the next period end, trial end or reset."""
        now = self.clock.now()
        times: list[datetime] = []
        for state in inv.read_world(self.billing).customers:
            for row in state.rows:
                times += [t for t in (row.next_reset_at, row.expires_at) if t]
            for p in state.products:
                if p.status != "expired":
                    times += [
                        t
                        for t in (
                            p.current_period_end,
                            p.trial_ends_at,
                            p.ends_at,
                            p.started_at if p.status == "scheduled" else None,
                        )
                        if t
                    ]
        later = [t for t in times if t > now]
        if later:
            self.do_advance(min(later) - now + timedelta(seconds=1))

    def do_process_due(self) -> None:
        self.call(tr.call("process_due"), lambda: self.billing.process_due())

    # -- invariants -------------------------------------------------------------------------
    def _see_trials(self, world: inv.World) -> None:
        for state in world.customers:
            for p in state.products:
                if inv.is_trial(p) and p.instance_id not in self._trials:
                    assert p.trial_ends_at is not None
                    self._trials[p.instance_id] = inv.Trial(
                        p.instance_id,
                        p.product_id,
                        state.pk,
                        state.id,
                        p.entity_id,
                        state.fingerprint,
                        p.started_at,
                        p.trial_ends_at,
                    )

    @invariant()
    def engine_invariants(self) -> None:
        world = inv.read_world(self.billing)
        self._see_trials(world)
        problems = inv.trial_problems(self.catalog, self._trials.values())
        for state in world.customers:
            problems += inv.row_problems(state, self._loose)
            problems += inv.invoice_problems(state, world.invoices[state.pk])
            tracked = self._tracks.get(state.pk, 0)
            if world.events[state.pk] != tracked:
                problems.append(
                    f"customer {state.id!r} has {world.events[state.pk]} events after "
                    f"{tracked} accepted tracks"
                )
        if problems:
            self.fail("; ".join(problems))


# -- building a machine for one catalog ------------------------------------------------------


def _source(factory: Callable[[], Gateway | None] | None) -> str | None:
    """How the transcript's test builds the gateway (its class, called with no arguments)."""
    if factory is None:
        return None
    return f"{getattr(factory, '__name__', 'gateway_factory')}()"


def _pool(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def _units(included: Decimal | None, units: Decimal) -> Callable[[int], Decimal]:
    return lambda packs: (included or Decimal(0)) + packs * units


def _quantities(product: Product) -> st.SearchStrategy[dict[str, Decimal] | None]:
    prepaid = [i for i in product.items if i.is_prepaid]
    if not prepaid:
        return st.none()
    return st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {
                i.feature_id: st.integers(0, 4).map(_units(i.included, i.billing_units))
                for i in prepaid
            }
        ),
    )


def catalog_machine(
    catalog: Catalog,
    *,
    store_factory: Callable[[], Store] | None = None,
    gateway_factory: Callable[[], Gateway | None] | None = None,
    start: datetime | None = None,
    customers: int = 3,
    fingerprints: int = 2,
    emails: int = 2,
    max_examples: int = 100,
    steps: int = 20,
    name: str = "CatalogMachine",
) -> type[CatalogMachine]:
    """A ``RuleBasedStateMachine`` class for ``catalog``; subclass it to add your own rules.

    ``store_factory()`` must return a fresh, empty store for every example (default: a
    ``MemoryStore`` via ``memory://``; see ``autumn_core.testing.stores.fresh_stores``).
    ``gateway_factory()`` returns the payment provider of each example (default: none, paid
    products attach as if paid). ``customers``, ``fingerprints`` and ``emails`` size the pools
    the machine draws from: small pools make customers share fingerprints and emails.
    """
    if not isinstance(catalog, Catalog):
        raise TypeError(f"catalog_machine takes a Catalog, got {catalog!r}")
    ids = _pool("c", customers)
    fps = [f"fp-{i}" for i in range(fingerprints)]
    mails = [f"user{i}@example.com" for i in range(emails)]
    products = [p.id for p in catalog.products]
    by_id = {p.id: p for p in catalog.products}
    usable = [f for f in catalog.features if f.type != "boolean"]
    allocated = [f.id for f in catalog.features if f.type == "allocated"]
    events = sorted({e for f in catalog.features for e in getattr(f, "event_names", ())})
    ns: dict[str, Any] = {
        "catalog": catalog,
        "store_factory": staticmethod(store_factory or fresh_stores("memory://")),
        "gateway_factory": staticmethod(gateway_factory) if gateway_factory else None,
        "gateway_source": _source(gateway_factory),
        "start": start or START,
    }

    cid = st.sampled_from(ids)
    maybe_fp = st.one_of(st.none(), st.sampled_from(fps))
    maybe_email = st.one_of(st.none(), st.sampled_from(mails))
    scope = (
        st.one_of(st.none(), st.none(), st.none(), st.sampled_from(["e0", "e1"]))
        if allocated
        else st.none()
    )
    key = st.one_of(st.none(), st.sampled_from(["k0", "k1"]))
    values = st.one_of(
        st.integers(1, 150).map(Decimal),
        st.integers(-60, -1).map(Decimal),
        st.decimals(min_value=-50, max_value=300, places=2, allow_nan=False),
    )

    @rule(customer=st.one_of(cid, cid, cid, st.none()), email=maybe_email, fp=maybe_fp)
    def create_customer(
        self: CatalogMachine, customer: str | None, email: str | None, fp: str | None
    ) -> None:
        if customer is None and email is None:
            email = mails[0]  # a pre-created customer (no id yet) needs an email
        self.do_create(customer, email, fp if customer is not None else None)

    attach_args = st.sampled_from(products).flatmap(
        lambda pid: st.tuples(st.just(pid), _quantities(by_id[pid]))
    )

    trialing = [p.id for p in catalog.products if p.free_trial is not None]
    if trialing:

        @rule(
            customer=cid,
            product=st.sampled_from(trialing),
            fp=st.sampled_from(fps) if fps else st.none(),
            entity_id=scope,
        )
        def attach_trial_product(
            self: CatalogMachine, customer: str, product: str, fp: str | None, entity_id: str | None
        ) -> None:
            """Attach a product with a trial to a customer (created with ``fp`` if new)."""
            self.do_attach(customer, product, fp, entity_id, None, None)

        ns.update(attach_trial_product=attach_trial_product)

    @rule(
        ref=st.one_of(cid, cid, cid, st.sampled_from(mails).map(ByEmail)),
        product=attach_args,
        fp=maybe_fp,
        entity_id=scope,
        key=key,
    )
    def attach(
        self: CatalogMachine,
        ref: Any,
        product: tuple[str, dict[str, Decimal] | None],
        fp: str | None,
        entity_id: str | None,
        key: str | None,
    ) -> None:
        self.do_attach(ref, product[0], fp, entity_id, product[1], key)

    @rule(
        customer=cid,
        product=st.sampled_from(products),
        entity_id=scope,
        how=st.sampled_from(["at period end", "immediately", "uncancel"]),
    )
    def cancel(
        self: CatalogMachine, customer: str, product: str, entity_id: str | None, how: str
    ) -> None:
        if how == "uncancel":
            kw: dict[str, Any] = {"entity_id": entity_id}
            source = tr.call("uncancel", customer, product, **kw)
            self.call(source, lambda: self.billing.uncancel(customer, product, **kw), customer)
            return
        kw = {"entity_id": entity_id, "immediately": True if how == "immediately" else None}
        kw = {k: v for k, v in kw.items() if v is not None}
        self.call(
            tr.call("cancel", customer, product, **kw),
            lambda: self.billing.cancel(customer, product, **kw),
            subject=customer,
        )

    if usable:
        what: st.SearchStrategy[tuple[str | None, str | None]] = st.sampled_from(
            [(f.id, None) for f in usable]
        )
        if events:
            what = st.one_of(what, st.sampled_from([(None, e) for e in events]))

        @rule(
            customer=cid,
            what=what,
            value=values,
            overage=st.sampled_from(["cap", "cap", "reject"]),
            entity_id=scope,
            key=key,
        )
        def track(
            self: CatalogMachine,
            customer: str,
            what: tuple[str | None, str | None],
            value: Decimal,
            overage: str,
            entity_id: str | None,
            key: str | None,
        ) -> None:
            mode = "cap" if what[1] is not None else overage
            self.do_track(customer, what[0], what[1], value, mode, entity_id, key)

        @rule(
            customer=cid,
            feature=st.sampled_from([f.id for f in usable]),
            required=st.integers(0, 300).map(Decimal),
            send_event=st.booleans(),
            entity_id=scope,
        )
        def check(
            self: CatalogMachine,
            customer: str,
            feature: str,
            required: Decimal,
            send_event: bool,
            entity_id: str | None,
        ) -> None:
            self.do_check(customer, feature, required, send_event, entity_id)

        settable = [f.id for f in usable if f.type != "allocated"]

        @rule(
            customer=cid,
            feature=st.sampled_from([f.id for f in usable]),
            edit=st.one_of(
                st.sampled_from(["0", "0.25", "0.5", "1"]).map(lambda x: ("set", Decimal(x))),
                st.integers(1, 100).map(lambda n: ("grant", Decimal(n))),
            ),
            reset=st.sampled_from([None, "day", "month"]),
        )
        def edit_balance(
            self: CatalogMachine,
            customer: str,
            feature: str,
            edit: tuple[str, Decimal],
            reset: str | None,
        ) -> None:
            """``balances.set`` to a fraction of what is left, or ``balances.grant``."""
            if edit[0] == "set":
                if feature in settable:
                    self.do_set(customer, feature, edit[1])
                return
            self.do_grant(customer, feature, edit[1], None if feature in allocated else reset)

        ns.update(track=track, check=check, edit_balance=edit_balance)

    if allocated:

        @rule(
            customer=cid,
            entity_id=st.sampled_from(["e0", "e1"]),
            feature=st.one_of(st.sampled_from(allocated), st.none()),
        )
        def entity(
            self: CatalogMachine, customer: str, entity_id: str, feature: str | None
        ) -> None:
            """Create an entity of an allocated feature, or delete it (``feature`` None)."""
            if feature is None:
                self.call(
                    tr.call("entities.delete", customer, entity_id),
                    lambda: self.billing.entities.delete(customer, entity_id),
                    subject=customer,
                )
                return
            self.call(
                tr.call("entities.create", customer, entity_id, feature),
                lambda: self.billing.entities.create(customer, entity_id, feature),
                subject=customer,
            )

        ns.update(entity=entity)

    @rule(
        step=st.one_of(
            st.just("next"),
            st.integers(1, 72).map(lambda h: timedelta(hours=h)),
            st.integers(3, 45).map(lambda d: timedelta(days=d)),
        ),
        process_due=st.booleans(),
    )
    def advance(self: CatalogMachine, step: timedelta | str, process_due: bool) -> None:
        """Move the clock: hours, days, or one second past the next period end, trial end or
        reset ("next"); then maybe ``process_due()``."""
        if isinstance(step, timedelta):
            self.do_advance(step)
        else:
            self.do_advance_to_next()
        if process_due:
            self.do_process_due()

    @precondition(lambda self: bool(self._keyed))
    @rule(pick=st.integers(0, 10))
    def replay(self: CatalogMachine, pick: int) -> None:
        """Send a keyed call again, exactly as the first time."""
        seen = list(self._keyed.values())[pick % len(self._keyed)]
        kw = dict(seen.kwargs)
        if seen.operation == "track":
            args = seen.args
            feature = args[1] if len(args) > 1 else None
            self.do_track(
                args[0],
                feature,
                kw.get("event_name"),
                kw["value"],
                kw.get("overage", "cap"),
                kw.get("entity_id"),
                seen.key,
            )
        else:
            self.do_attach(
                seen.customer_id,
                seen.args[0],
                kw["customer_data"].fingerprint if kw.get("customer_data") else None,
                kw.get("entity_id"),
                kw.get("quantities"),
                seen.key,
            )

    ns.update(
        create_customer=create_customer,
        attach=attach,
        cancel=cancel,
        advance=advance,
        replay=replay,
    )
    machine = cast(type[CatalogMachine], type(name, (CatalogMachine,), ns))
    machine.TestCase.settings = settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    return machine
