"""Customers: get-or-create, email claim, update, delete, list (docs/rules.md §3)."""

from __future__ import annotations

from typing import Any

import attrs

from autumn_core.app.context import new_id
from autumn_core.app.holds import lock_key
from autumn_core.app.provisioning import attach_defaults
from autumn_core.app.unit import Unit
from autumn_core.errors import Conflict, CustomerNotFound, InvalidRequest, UniqueViolation
from autumn_core.model import CustomerState
from autumn_core.results import UNSET, CustomerData
from autumn_core.values import check_email, check_id, check_metadata, check_optional_str


def create_customer(
    unit: Unit,
    customer_id: str | None,
    *,
    name: str | None,
    email: str | None,
    fingerprint: str | None,
    metadata: dict[str, Any],
    gateway_customer_id: str | None = None,
) -> CustomerState:
    """Get-or-create (C4), claiming an id-less customer with the same email (C5)."""
    if customer_id is None and email is None:
        raise InvalidRequest("a customer needs an id or an email")
    if customer_id is not None:
        existing = unit.find(customer_id)
        if existing is not None:
            return _fill_empty(unit, existing, name, email)
    if email is not None:
        idless = [c for c in unit.tx.customers_by_email(email) if c.id is None]
        if idless:
            claimed = unit.find_pk(idless[0].pk)
            if customer_id is not None:
                claimed = attrs.evolve(claimed, id=customer_id)
            return _fill_empty(unit, claimed, name, email, force=customer_id is not None)
    state = CustomerState(
        pk=new_id("cus"),
        id=customer_id,
        created_at=unit.now,
        name=name,
        email=email,
        fingerprint=fingerprint,
        metadata=metadata,
        gateway_customer_id=gateway_customer_id,
    )
    # Defaults attach in the creating transaction (C6); claims happen after the insert.
    unit.insert(state)
    return unit.put(attach_defaults(unit, state))


def get_or_create(unit: Unit, ref: Any, data: CustomerData) -> CustomerState:
    """C8: a missing customer created by a call that auto-creates (``Unit.get_or_create``)."""
    return create_customer(
        unit,
        ref,
        name=check_optional_str(data.name, "name"),
        email=None if data.email is None else check_email(data.email),
        fingerprint=check_optional_str(data.fingerprint, "fingerprint"),
        metadata=check_metadata(data.metadata),
    )


def _fill_empty(
    unit: Unit, state: CustomerState, name: str | None, email: str | None, *, force: bool = False
) -> CustomerState:
    changes: dict[str, Any] = {}
    if name and not state.name:
        changes["name"] = name
    if email and not state.email:
        changes["email"] = email
    if not changes and not force:
        return state
    return unit.put(attrs.evolve(state, **changes))


def validate_create(
    customer_id: Any,
    name: Any,
    email: Any,
    fingerprint: Any,
    metadata: Any,
    gateway_customer_id: Any,
) -> dict[str, Any]:
    if customer_id is not None:
        check_id(customer_id)
    return {
        "name": check_optional_str(name, "name"),
        "email": None if email is None else check_email(email),
        "fingerprint": check_optional_str(fingerprint, "fingerprint"),
        "metadata": check_metadata(metadata),
        "gateway_customer_id": check_optional_str(gateway_customer_id, "gateway_customer_id"),
    }


def update_customer(unit: Unit, ref: Any, patch: dict[str, Any]) -> CustomerState:
    state = unit.get(ref)
    changes: dict[str, Any] = {}
    if patch.get("name", UNSET) is not UNSET:
        changes["name"] = check_optional_str(patch["name"], "name")
    if patch.get("email", UNSET) is not UNSET:
        changes["email"] = None if patch["email"] is None else check_email(patch["email"])
    if patch.get("fingerprint", UNSET) is not UNSET:
        changes["fingerprint"] = check_optional_str(patch["fingerprint"], "fingerprint")
    if patch.get("metadata", UNSET) is not UNSET:
        changes["metadata"] = check_metadata(patch["metadata"])
    new_id_ = patch.get("new_id", UNSET)
    if new_id_ is not UNSET:
        check_id(new_id_, "new_id")
        if new_id_ != state.id:
            owner = unit.tx.customer_pk(new_id_)
            if owner is not None and owner != state.pk:
                raise Conflict(f"customer id {new_id_!r} is already in use")
            changes["id"] = new_id_
    if state.id is None and changes.get("email", state.email) is None and "id" not in changes:
        raise InvalidRequest("an id-less customer must keep an email")
    if not changes:
        return state
    updated = unit.put(attrs.evolve(state, **changes))
    try:
        unit.flush()
    except UniqueViolation:
        raise Conflict(f"customer update conflicts with another customer: {changes}") from None
    return updated


def delete_customer(unit: Unit, ref: Any) -> None:
    state = unit.find(ref)
    if state is None:
        raise CustomerNotFound(f"customer {ref!r} does not exist")
    unit.tx.delete_customer(state.pk)
    # Its open locks go with it (their ids may be used again). A settled lock's record stays
    # until ``forget_old`` drops it; finalizing it finds no customer: ``LockNotFound``.
    for lk in state.control_state.locks:
        unit.tx.delete_pending(lock_key(lk.id))
    unit.forget(state.pk)
