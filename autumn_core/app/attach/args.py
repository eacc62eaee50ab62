"""An attach's arguments: checked before any transaction (A1), and kept in an operation record
so ``recover()`` can run the same attach again (I1-I4).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from autumn_core.app.context import Context, new_id
from autumn_core.app.unit import args_fingerprint
from autumn_core.app.usage import check_customer_ref, check_entity_ref
from autumn_core.catalog import FreeTrial, Product
from autumn_core.errors import InvalidRequest, ProductNotFound
from autumn_core.model import ZERO
from autumn_core.results import UNSET, ByEmail, CustomerData
from autumn_core.serialization import converter
from autumn_core.values import check_key, check_optional_str, to_decimal


# -- validation (A1) ------------------------------------------------------------------------
@attrs.frozen
class AttachArgs:
    customer: Any
    product: Product
    entity_id: str | None
    quantities: Mapping[str, Decimal] | None
    free_trial: Any
    success_url: str | None
    force_checkout: bool
    customer_data: CustomerData | None
    idempotency_key: str | None
    #: The operation id: charge keys are ``attach:<nonce>`` / ``trial:<nonce>``. Derived from
    #: the caller's idempotency key (scoped to the customer) when there is one, so a retry
    #: after a crash finds the same pending operation; otherwise fresh per call (and then
    #: persisted in the pending record before the gateway is called).
    nonce: str = attrs.field(factory=lambda: new_id("op"))
    #: Grant for free: ``product`` is the catalog product with every price removed.
    free: bool = False

    def fingerprint(self) -> str:
        trial = self.free_trial
        return args_fingerprint(
            {
                **({"free": True} if self.free else {}),
                "product_id": self.product.id,
                "entity_id": self.entity_id,
                "quantities": None if self.quantities is None else dict(self.quantities),
                "free_trial": "unset" if trial is UNSET else trial,
                "success_url": self.success_url,
                "force_checkout": self.force_checkout,
                "customer_data": self.customer_data,
            }
        )


def validate_attach(
    ctx: Context,
    customer_id: Any,
    product_id: Any,
    *,
    entity_id: Any = None,
    quantities: Any = None,
    free_trial: Any = UNSET,
    success_url: Any = None,
    force_checkout: Any = False,
    customer_data: Any = None,
    idempotency_key: Any = None,
    free: Any = False,
) -> AttachArgs:
    """A1: everything that can be checked without the customer, before any transaction."""
    check_customer_ref(customer_id)
    product = ctx.registry.product(product_id) if isinstance(product_id, str) else None
    if product is None:
        raise ProductNotFound(f"product {product_id!r} does not exist")
    if not isinstance(free, bool):
        raise InvalidRequest(f"free must be a bool, got {free!r}")
    check_entity_ref(entity_id)
    parsed: dict[str, Decimal] | None = None
    if quantities is not None:
        if not isinstance(quantities, Mapping):
            raise InvalidRequest(f"quantities must be a dict, got {quantities!r}")
        prepaid = {i.feature_id: i for i in product.items if i.is_prepaid}
        parsed = {}
        for fid, raw in quantities.items():
            item = prepaid.get(fid)
            if item is None:
                raise InvalidRequest(
                    f"quantities: {fid!r} is not a prepaid item of product {product.id!r}"
                )
            q = to_decimal(raw, f"quantity of {fid!r}")
            if q < 0:
                raise InvalidRequest(f"quantity of {fid!r} must be >= 0, got {raw!r}")
            if q != q.to_integral_value():
                raise InvalidRequest(f"quantity of {fid!r} must be a whole number, got {raw!r}")
            if item.max_purchase is not None and q - (item.included or ZERO) > item.max_purchase:
                # Q4
                raise InvalidRequest(
                    f"quantity of {fid!r} exceeds max_purchase {item.max_purchase} "
                    f"beyond the included {item.included}"
                )
            parsed[fid] = q
    if free_trial is not UNSET and free_trial is not None and not isinstance(free_trial, FreeTrial):
        raise InvalidRequest(f"free_trial must be a FreeTrial, None or unset, got {free_trial!r}")
    check_optional_str(success_url, "success_url")
    if not isinstance(force_checkout, bool):
        raise InvalidRequest(f"force_checkout must be a bool, got {force_checkout!r}")
    if customer_data is not None and not isinstance(customer_data, CustomerData):
        raise InvalidRequest(f"customer_data must be a CustomerData, got {customer_data!r}")
    check_key(idempotency_key, "idempotency_key")
    if free:
        product, free_trial = without_prices(product), None
    return AttachArgs(
        customer_id,
        product,
        entity_id,
        parsed,
        free_trial,
        success_url,
        force_checkout,
        customer_data,
        idempotency_key,
        nonce=operation_id(customer_id, idempotency_key),
        free=free,
    )


def without_prices(product: Product) -> Product:
    """The product granted for free: same items (so rows line up with the catalog's version),
    every amount zero and no trial, so it is attached, renewed and billed as a free product."""
    items = [attrs.evolve(i, price=ZERO, tiers=None) if i.is_priced else i for i in product.items]
    return attrs.evolve(product, price=None, items=items, free_trial=None)


def operation_id(customer: Any, idempotency_key: str | None) -> str:
    """Deterministic from (customer, caller key), scoped to attach; else a fresh id."""
    if idempotency_key is None:
        return new_id("op")
    ref = f"email:{customer.email.lower()}" if isinstance(customer, ByEmail) else f"id:{customer}"
    digest = hashlib.sha256(f"attach\0{ref}\0{idempotency_key}".encode()).hexdigest()
    return "k" + digest[:40]


def operation_payload(a: AttachArgs) -> dict[str, Any]:
    """How ``recover()`` runs this attach again (kept in its pending operation record)."""
    customer = (
        {"email": a.customer.email} if isinstance(a.customer, ByEmail) else {"id": a.customer}
    )
    return {
        "op": "attach",
        "customer": customer,
        "product_id": a.product.id,
        "entity_id": a.entity_id,
        "quantities": None
        if a.quantities is None
        else {k: str(v) for k, v in a.quantities.items()},
        "free_trial": "unset"
        if a.free_trial is UNSET
        else (None if a.free_trial is None else converter.unstructure(a.free_trial)),
        "success_url": a.success_url,
        "force_checkout": a.force_checkout,
        "customer_data": None
        if a.customer_data is None
        else converter.unstructure(a.customer_data),
        "idempotency_key": a.idempotency_key,
        "nonce": a.nonce,
        **({"free": True} if a.free else {}),
    }


def args_from_payload(ctx: Context, payload: Mapping[str, Any]) -> AttachArgs:
    """The ``AttachArgs`` of a recorded attach (``operation_payload``), same operation id."""
    product = ctx.registry.product(payload["product_id"])
    if product is None:
        raise ProductNotFound(f"product {payload['product_id']!r} does not exist")
    ref = payload["customer"]
    customer: Any = ByEmail(ref["email"]) if "email" in ref else ref["id"]
    raw_trial = payload.get("free_trial", "unset")
    quantities = payload.get("quantities")
    data = payload.get("customer_data")
    free = bool(payload.get("free", False))
    if free:
        product, raw_trial = without_prices(product), None
    return AttachArgs(
        customer,
        product,
        payload.get("entity_id"),
        None if quantities is None else {k: Decimal(v) for k, v in quantities.items()},
        UNSET
        if raw_trial == "unset"
        else (None if raw_trial is None else converter.structure(raw_trial, FreeTrial)),
        payload.get("success_url"),
        bool(payload.get("force_checkout", False)),
        None if data is None else converter.structure(data, CustomerData),
        payload.get("idempotency_key"),
        nonce=payload["nonce"],
        free=free,
    )


def charge_prefixes(a: AttachArgs) -> tuple[str, ...]:
    """The charge keys an attach's driver defers (see ``billing.drive``)."""
    return (f"attach:{a.nonce}", f"trial:{a.nonce}")
