"""The rules of a catalog's machine: ``catalog_machine(catalog)`` draws customers, products,
features, quantities and clock moves from the catalog, and adds one hypothesis rule per
public call to a subclass of ``CatalogMachine`` (``autumn_core.testing.machine``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from autumn_core.catalog import Catalog, Product
from autumn_core.ports import Gateway, Store
from autumn_core.results import ByEmail
from autumn_core.testing import transcript as tr
from autumn_core.testing.machine import START, CatalogMachine
from autumn_core.testing.stores import fresh_stores


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
