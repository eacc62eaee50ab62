"""The parts of the facade: ``billing.customers``, ``.balances``, ``.products`` and ``.entities``
(``.events`` and ``.invoices``: ``facade_history``). Each runs its use case through the
``Autumn`` that owns it (its transactions)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

import attrs

from autumn_core.app import balances as balances_uc
from autumn_core.app import controls as controls_uc
from autumn_core.app import customers as customers_uc
from autumn_core.app import entities as entities_uc
from autumn_core.app import locks as locks_uc
from autumn_core.app import usage as usage_uc
from autumn_core.app.context import Context
from autumn_core.app.unit import Unit
from autumn_core.app.views import entity_view
from autumn_core.errors import (
    CustomerNotFound,
    InvalidRequest,
    ProductNotFound,
)
from autumn_core.results import (
    UNSET,
    Balance,
    Customer,
    Entity,
    FinalizeResult,
    ProductVersion,
)
from autumn_core.values import (
    check_email,
    check_id,
    check_optional_str,
)

T = TypeVar("T")


class Owner(Protocol):
    """What a part needs of the ``Autumn`` that owns it."""

    _ctx: Context

    def _write(self, body: Callable[[Unit], T], *, optimistic: bool = False) -> T: ...

    def _read(self, body: Callable[[Unit], T]) -> T: ...

    def _view(self, unit: Unit, pk: str) -> Customer: ...


def _ref(customer_id: Any) -> None:
    """Customer ids (or ``ByEmail``) are checked before any transaction starts (C2)."""
    usage_uc.check_customer_ref(customer_id)


class _Part:
    def __init__(self, owner: Owner) -> None:
        self._a = owner


class Customers(_Part):
    """``billing.customers``: create, find, update, list and delete customers.

    Example:
        ```python
        billing.customers.create("user-1", email="ann@example.com")
        ```
    """

    def create(
        self,
        id: str | None = None,
        *,
        name: str | None = None,
        email: str | None = None,
        fingerprint: str | None = None,
        metadata: dict[str, Any] | None = None,
        gateway_customer_id: str | None = None,
        billing_controls: Any = None,
    ) -> Customer:
        """Get-or-create a customer; default products are attached on creation.

        Calling it again with the same id returns the existing customer (filling fields that were
        empty, ``billing_controls`` included: a ``BillingControls`` or Autumn's dict shape). ``id=None`` pre-creates a customer from its ``email``; a later create with an id and
        the same email claims it, keeping what was enabled on it.

        Example:
            ```python
            ann = billing.customers.create("user-1", email="ann@example.com", name="Ann")
            assert billing.customers.create("user-1").id == "user-1"   # get-or-create
            ```
        """
        fields = customers_uc.validate_create(
            id, name, email, fingerprint, metadata, gateway_customer_id
        )
        if id is None and email is None:
            raise InvalidRequest("a customer needs an id or an email")
        controls = controls_uc.check_controls(self._a._ctx, billing_controls)

        def body(unit: Unit) -> Customer:
            state = customers_uc.create_customer(unit, id, **fields)
            if not controls.empty and state.billing_controls.empty:
                state = unit.put(attrs.evolve(state, billing_controls=controls))
            return self._a._view(unit, state.pk)

        return self._a._write(body)

    def get(self, id: Any) -> Customer:
        """The customer with this id (or ``ByEmail(email)``); ``CustomerNotFound`` if none.

        Example:
            ```python
            ann = billing.customers.get("user-1")
            print(ann.features["messages"].remaining, [p.id for p in ann.products])
            ```
        """
        _ref(id)
        return self._a._read(lambda unit: self._a._view(unit, unit.get(id).pk))

    def get_by_email(self, email: str) -> Customer:
        """The customer with this email (case-insensitive), pre-created customers included.

        Example:
            ```python
            cfo = billing.customers.get_by_email("cfo@bigco.com")
            ```
        """
        from autumn_core.results import ByEmail

        check_email(email)
        return self.get(ByEmail(email))

    def update(self, id: Any, **patch: Any) -> Customer:
        """Change ``name``, ``email``, ``fingerprint``, ``metadata``, the id (``new_id``) or
        ``billing_controls`` (a dict replaces the lists it names, as Autumn's update does; a
        ``BillingControls`` or None replaces them all).

        Example:
            ```python
            billing.customers.update("user-1", name="Ann B.", metadata={"plan_source": "sales"})
            billing.customers.update(
                "user-1", billing_controls={"usage_limits": [
                    {"feature_id": "messages", "limit": 50, "interval": "day"}]}
            )
            ```
        """
        _ref(id)
        allowed = {"name", "email", "fingerprint", "metadata", "new_id", "billing_controls"}
        unknown = set(patch) - allowed
        if unknown:
            raise InvalidRequest(f"customers.update takes {sorted(allowed)}, not {sorted(unknown)}")
        controls = controls_uc.check_patch(self._a._ctx, patch.pop("billing_controls", UNSET))

        def body(unit: Unit) -> Customer:
            state = customers_uc.update_customer(unit, id, patch)
            state = controls_uc.set_customer_controls(state, controls)
            if state is not unit.current(state.pk):
                unit.put(state)
            return self._a._view(unit, state.pk)

        return self._a._write(body)

    def delete(self, id: Any) -> None:
        """Delete the customer with its products, balances and entities.

        Example:
            ```python
            billing.customers.delete("user-1")
            ```
        """
        _ref(id)
        self._a._write(lambda unit: customers_uc.delete_customer(unit, id))

    def list(
        self, *, limit: int = 100, starting_after: str | None = None, email: str | None = None
    ) -> list[Customer]:
        """A page of customers, oldest first (``limit`` 1..1000); the next page starts after the
        last id. ``email`` filters case-insensitively.

        Example:
            ```python
            page = billing.customers.list(limit=100)
            next_page = billing.customers.list(limit=100, starting_after=page[-1].id)
            ```
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidRequest(f"limit must be an integer in 1..1000, got {limit!r}")
        if email is not None:
            check_email(email)

        def body(unit: Unit) -> list[Customer]:
            after_pk = None
            if starting_after is not None:
                after_pk = unit.tx.customer_pk(check_id(starting_after))
                if after_pk is None:
                    raise CustomerNotFound(f"customer {starting_after!r} does not exist")
            states = unit.tx.list_customers(limit=limit, starting_after=after_pk, email=email)
            return [self._a._view(unit, unit.find_pk(s.pk).pk) for s in states]

        return self._a._read(body)


class Balances(_Part):
    """``billing.balances``: correct a balance or grant units outside any product.

    Example:
        ```python
        billing.balances.grant("user-1", "messages", 500)
        ```
    """

    def set(
        self,
        customer_id: Any,
        feature_id: str,
        *,
        remaining: Any = None,
        usage: Any = None,
        entity_id: str | None = None,
    ) -> Balance:
        """Set a feature's ``remaining`` or its ``usage`` (exactly one) and return its ``Balance``.

        Example:
            ```python
            billing.balances.set("user-1", "messages", remaining=250)
            ```
        """
        return self._a._write(
            lambda unit: balances_uc.set_balance(
                unit, customer_id, feature_id, remaining, usage, entity_id
            )
        )

    def grant(
        self,
        customer_id: Any,
        feature_id: str,
        amount: Any,
        *,
        reset: str | None = None,
        expires_at: datetime | None = None,
        entity_id: str | None = None,
    ) -> Balance:
        """Grant units outside any product (a promotion, a one-off top-up) and return the ``Balance``.

        Example:
            ```python
            from datetime import UTC, datetime

            billing.balances.grant("user-1", "messages", 500, expires_at=datetime(2027, 1, 1, tzinfo=UTC))
            ```
        """
        return self._a._write(
            lambda unit: balances_uc.grant_balance(
                unit, customer_id, feature_id, amount, reset, expires_at, entity_id
            )
        )

    def finalize(
        self,
        lock_id: str,
        action: str = "confirm",
        *,
        override_value: Any = None,
        properties: dict[str, Any] | None = None,
    ) -> FinalizeResult:
        """Settle a lock taken by ``check(..., lock=...)``: ``"confirm"`` charges
        ``override_value`` (default: what is held; more or less than held), ``"release"`` gives
        the hold back. Twice is once (``replayed``); an unknown lock is ``LockNotFound``, an
        expired one ``LockExpired``.

        Example:
            ```python
            billing.balances.finalize("job-1", "confirm", override_value=743)
            billing.balances.finalize("job-2", "release")
            ```
        """
        args = locks_uc.validate_finalize(lock_id, action, override_value, properties)
        # Decided from one customer: optimistic where the store can (a finalizer that lost a
        # race runs again, locking, and finds the lock settled).
        return self._a._write(lambda unit: locks_uc.finalize(unit, args), optimistic=True)

    def delete(
        self,
        customer_id: Any,
        feature_id: str | None = None,
        *,
        balance_id: str | None = None,
        entity_id: str | None = None,
        interval: Any = UNSET,
        recalculate: bool = False,
    ) -> None:
        """Delete granted balances (``balances.grant`` rows) of a feature, or one by its row id.

        ``interval`` picks the rows by reset interval (``None``: those that never reset);
        ``recalculate=True`` deducts their usage from the feature's remaining rows (B6).

        Example:
            ```python
            billing.balances.delete("user-1", "messages")             # every grant of messages
            billing.balances.delete("user-1", balance_id=row.id)      # one BalanceRow
            ```
        """
        self._a._write(
            lambda unit: balances_uc.delete_balance(
                unit, customer_id, feature_id, balance_id, entity_id, interval, recalculate
            )
        )


class Products(_Part):
    """``billing.products``: the stored versions of the catalog's products (grandfathering)."""

    def versions(self, product_id: str | None = None) -> list[ProductVersion]:
        """Every stored version of one product (or of every catalog product), oldest first.

        Example:
            ```python
            for v in billing.products.versions("pro"):
                print(v.version, v.created_at, v.latest, v.product.price)
            ```
        """
        registry = self._a._ctx.registry
        if product_id is None:
            ids = [p.id for p in self._a._ctx.catalog.products]
        else:
            if not isinstance(product_id, str) or product_id not in registry.latest:
                raise ProductNotFound(f"product {product_id!r} does not exist")
            ids = [product_id]
        out = []
        for pid in ids:
            latest = registry.latest[pid]
            for v in registry.version_numbers(pid):
                out.append(
                    ProductVersion(
                        pid,
                        v,
                        registry.created_at[(pid, v)],
                        v == latest,
                        registry.versions[(pid, v)],
                    )
                )
        return out


class Entities(_Part):
    """``billing.entities``: entities (seats, projects) of a customer."""

    def create(
        self,
        customer_id: Any,
        entity_id: str,
        feature_id: str,
        *,
        name: str | None = None,
        billing_controls: Any = None,
    ) -> Entity:
        """Create an entity (a seat, a project) of an allocated feature under a customer.

        ``billing_controls`` (no auto top-ups: those are customer-level) override the customer's
        per feature.

        Example:
            ```python
            billing.entities.create("user-1", "seat-1", "seats", name="Bob")
            ```
        """
        controls = controls_uc.check_controls(self._a._ctx, billing_controls, entity=True)

        def body(unit: Unit) -> Entity:
            state = entities_uc.create_entity(unit, customer_id, entity_id, feature_id, name)
            if not controls.empty:
                patch = {"billing_controls": controls_uc.whole(controls)}
                controls_uc.update_entity(unit, customer_id, entity_id, patch)
            return entity_view(self._a._ctx, unit.current(state.pk), entity_id, unit.now)

        return self._a._write(body)

    def update(
        self, customer_id: Any, entity_id: str, *, name: Any = UNSET, billing_controls: Any = UNSET
    ) -> Entity:
        """Change an entity's ``name`` or its ``billing_controls`` (merged as in
        ``customers.update``).

        Example:
            ```python
            billing.entities.update("user-1", "seat-1", billing_controls={"spend_limits": [
                {"feature_id": "messages", "enabled": True, "overage_limit": 100}]})
            ```
        """
        _ref(customer_id)
        check_id(entity_id, "entity id")
        patch: dict[str, Any] = {}
        if name is not UNSET:
            patch["name"] = check_optional_str(name, "name")
        controls = controls_uc.check_patch(self._a._ctx, billing_controls, entity=True)
        if controls:
            patch["billing_controls"] = controls

        def body(unit: Unit) -> Entity:
            pk = controls_uc.update_entity(unit, customer_id, entity_id, patch)
            return entity_view(self._a._ctx, unit.current(pk), entity_id, unit.now)

        return self._a._write(body)

    def get(self, customer_id: Any, entity_id: str) -> Entity:
        """One entity of a customer, with its products and features.

        Example:
            ```python
            seat = billing.entities.get("user-1", "seat-1")
            ```
        """
        _ref(customer_id)
        check_id(entity_id, "entity id")

        def body(unit: Unit) -> Entity:
            state = unit.get(customer_id)
            unit.entity_check(state, entity_id)
            return entity_view(self._a._ctx, state, entity_id, unit.now)

        return self._a._read(body)

    def list(self, customer_id: Any) -> list[Entity]:
        """Every entity of a customer.

        Example:
            ```python
            seats = billing.entities.list("user-1")
            ```
        """
        _ref(customer_id)
        return self._a._read(lambda unit: self._a._view(unit, unit.get(customer_id).pk).entities)

    def delete(self, customer_id: Any, entity_id: str) -> None:
        """Delete an entity of a customer.

        Example:
            ```python
            billing.entities.delete("user-1", "seat-1")
            ```
        """
        self._a._write(lambda unit: entities_uc.delete_entity(unit, customer_id, entity_id))
