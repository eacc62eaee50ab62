"""A stateful model of any catalog: hypothesis drives the engine, the invariants watch it.

``catalog_machine(catalog)`` (``machine_rules``) returns a ``RuleBasedStateMachine`` class whose rules are the
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
from typing import Any, ClassVar

import attrs
from hypothesis import currently_in_test_context, note
from hypothesis.stateful import RuleBasedStateMachine, invariant

from autumn_core.catalog import Catalog
from autumn_core.clock import ManualClock
from autumn_core.errors import AutumnError, GatewayError, IdempotencyConflict, StoreError
from autumn_core.facade import Autumn
from autumn_core.ports import Gateway, Store
from autumn_core.results import Customer, CustomerData
from autumn_core.testing import invariants as inv
from autumn_core.testing import transcript as tr

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
