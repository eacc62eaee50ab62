"""Library results as Autumn's 2.5 response objects (snake_case, epoch ms, numbers).

Every key the autumn-sdk 1.2.0 models require is written, nullable ones as ``null``; Autumn's
optional keys are added where the engine has the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from autumn_core import (
    Balance,
    BillingControls,
    Catalog,
    Customer,
    CustomerProduct,
    Entity,
    Event,
    Feature,
    Invoice,
    Item,
    Product,
    ProductVersion,
)

Json = dict[str, Any]


def num(value: Decimal | int | None) -> int | float | None:
    """A Decimal as a JSON number: an integer when whole, else the nearest float."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def controls_json(controls: BillingControls, usage: Mapping[str, Decimal] | None = None) -> Json:
    """Autumn's ``billing_controls`` object: the lists that are set, numbers as JSON numbers;
    each usage limit with the ``usage`` of its current window when ``usage`` is given (as
    Autumn's customer and entity responses)."""
    out: Json = {}
    for field in attrs.fields(BillingControls):
        entries = getattr(controls, field.name)
        if entries:
            out[field.name] = [_entry(e) for e in entries]
    if usage is not None:
        for entry in out.get("usage_limits", []):
            used = usage.get(entry["feature_id"])
            if used is not None:
                entry["usage"] = num(used)
    return out


def _entry(entry: Any) -> Json:
    out: Json = {}
    for field in attrs.fields(type(entry)):
        value = getattr(entry, field.name)
        if value is None:
            continue
        if attrs.has(type(value)):
            value = _entry(value)
        elif isinstance(value, Decimal):
            value = num(value)
        out[field.name] = value
    return out


class Shapes:
    """Response builders bound to a catalog, an environment name and a currency."""

    def __init__(self, catalog: Catalog, *, env: str, currency: str) -> None:
        self.catalog = catalog
        self.env = env
        self.currency = currency

    # -- balances and flags -----------------------------------------------------------------
    def balance(self, b: Balance) -> Json:
        return {
            "feature_id": b.feature_id,
            "granted": num(b.granted),
            "remaining": num(b.remaining),
            "usage": num(b.usage),
            "unlimited": b.unlimited,
            "overage_allowed": b.overage_allowed,
            "max_purchase": num(b.max_purchase),
            "next_reset_at": ms(b.next_reset_at),
            # Held by open locks (an extension: Autumn's Balance has no such field).
            "held": num(b.held),
            "breakdown": [
                {
                    "id": r.id,
                    "plan_id": r.product_id,
                    "included_grant": num(r.granted),
                    "prepaid_grant": 0,
                    "remaining": num(max(r.balance, Decimal(0))),
                    "usage": num(r.usage),
                    "unlimited": b.unlimited,
                    "reset": None
                    if r.reset is None
                    else {"interval": r.reset, "resets_at": ms(r.next_reset_at)},
                    "price": None,
                    "expires_at": ms(r.expires_at),
                }
                for r in b.breakdown
            ],
        }

    def flag(self, b: Balance, products: list[CustomerProduct]) -> Json:
        plan_id = next(
            (p.id for p in products if self._grants(p.id, b.feature_id)),
            b.breakdown[0].product_id if b.breakdown else None,
        )
        return {
            "id": f"{plan_id or 'grant'}:{b.feature_id}",
            "plan_id": plan_id,
            "expires_at": None,
            "feature_id": b.feature_id,
        }

    def _grants(self, product_id: str, feature_id: str) -> bool:
        product = self.catalog.product(product_id)
        return product is not None and any(i.feature_id == feature_id for i in product.items)

    def is_flag(self, b: Balance) -> bool:
        return b.type == "boolean"

    def balances_and_flags(
        self, features: dict[str, Balance], products: list[CustomerProduct]
    ) -> tuple[Json, Json]:
        balances: Json = {}
        flags: Json = {}
        for fid, b in features.items():
            if self.is_flag(b):
                flags[fid] = self.flag(b, products)
            else:
                balances[fid] = self.balance(b)
        return balances, flags

    # -- products held ----------------------------------------------------------------------
    def _one_off(self, p: CustomerProduct) -> bool:
        product = self.catalog.product(p.id)
        return product is not None and product.is_one_off

    def subscription(self, p: CustomerProduct) -> Json:
        started = p.started_at or p.current_period_start
        return {
            "id": f"{p.entity_id}:{p.id}" if p.entity_id else p.id,
            "plan_id": p.id,
            "auto_enable": p.default,
            "add_on": p.add_on,
            "status": "scheduled" if p.status == "scheduled" else "active",
            "past_due": p.status == "past_due",
            "canceled_at": ms(p.canceled_at),
            "expires_at": ms(p.ends_at),
            "trial_ends_at": ms(p.trial_ends_at),
            "started_at": ms(started) or 0,
            "current_period_start": ms(p.current_period_start),
            "current_period_end": ms(p.current_period_end),
            "quantity": 1,
            "scope": "entity" if p.entity_id else "customer",
        }

    def purchase(self, p: CustomerProduct) -> Json:
        return {
            "plan_id": p.id,
            "expires_at": ms(p.ends_at),
            "started_at": ms(p.started_at) or 0,
            "quantity": 1,
        }

    def holdings(self, products: list[CustomerProduct]) -> tuple[list[Json], list[Json]]:
        subs = [self.subscription(p) for p in products if not self._one_off(p)]
        buys = [self.purchase(p) for p in products if self._one_off(p)]
        return subs, buys

    # -- customers and entities -------------------------------------------------------------
    def customer(self, c: Customer, *, invoices: list[Invoice] | None = None) -> Json:
        subs, buys = self.holdings(c.products)
        balances, flags = self.balances_and_flags(c.features, c.products)
        out: Json = {
            "id": c.id,
            "name": c.name,
            "email": c.email,
            "created_at": ms(c.created_at),
            "fingerprint": c.fingerprint,
            "stripe_id": c.gateway_customer_id,
            "env": self.env,
            "metadata": dict(c.metadata),
            "send_email_receipts": False,
            "billing_controls": controls_json(c.billing_controls, c.limit_usage),
            "subscriptions": subs,
            "purchases": buys,
            "licenses": [],
            "balances": balances,
            "flags": flags,
            "entities": [self.entity(e) for e in c.entities],
        }
        if invoices is not None:
            out["invoices"] = [self.invoice(i) for i in invoices]
        return out

    def entity(self, e: Entity) -> Json:
        subs, buys = self.holdings(e.products)
        balances, flags = self.balances_and_flags(e.features, e.products)
        return {
            "id": e.id,
            "name": e.name,
            "customer_id": e.customer_id,
            "feature_id": e.feature_id,
            "created_at": ms(e.created_at),
            "env": self.env,
            "billing_controls": controls_json(e.billing_controls, e.limit_usage),
            "subscriptions": subs,
            "purchases": buys,
            "balances": balances,
            "flags": flags,
        }

    def invoice(self, i: Invoice) -> Json:
        return {
            "plan_ids": sorted({ln.product_id for ln in i.lines if ln.product_id}),
            "stripe_id": i.gateway_invoice_id or i.id,
            "status": i.status,
            "total": num(i.total),
            "currency": i.currency,
            "created_at": ms(i.created_at),
            "hosted_invoice_url": None,
        }

    # -- catalog ----------------------------------------------------------------------------
    def feature(self, f: Feature) -> Json:
        out: Json = {
            "id": f.id,
            "name": f.name or f.id,
            "type": "metered" if f.type == "allocated" else f.type,
            "consumable": f.type in ("metered", "credit_system"),
            "archived": False,
            "event_names": list(f.event_names),
        }
        if f.type == "credit_system":
            out["credit_schema"] = [
                {"metered_feature_id": k, "credit_cost": num(v)} for k, v in f.costs.items()
            ]
        return out

    def _item(self, item: Item) -> Json:
        price = None
        if item.is_priced:
            price = {
                "interval": item.interval or "one_off",
                "billing_units": num(item.billing_units),
                "billing_method": "prepaid" if item.is_prepaid else "usage_based",
                "max_purchase": num(item.max_purchase),
                "amount": num(item.first_amount()),
            }
        return {
            "feature_id": item.feature_id,
            "included": num(item.included or Decimal(0)),
            "unlimited": item.unlimited,
            "reset": None if item.reset is None else {"interval": item.reset},
            "price": price,
        }

    def plan(self, v: ProductVersion) -> Json:
        """A stored version of a product as Autumn's Plan (its number and when it was stored)."""
        p: Product = v.product
        out: Json = {
            "id": p.id,
            "name": p.name or p.id,
            "description": None,
            "group": p.group or None,
            "version": v.version,
            "add_on": p.add_on,
            "auto_enable": p.default,
            "price": None
            if p.price is None
            else {
                "amount": num(p.price.amount),
                "interval": p.price.interval,
                "interval_count": p.price.interval_count,
            },
            "items": [self._item(i) for i in p.items],
            "created_at": ms(v.created_at),
            "env": self.env,
            "archived": False,
            "config": {},
            "metadata": {},
            "base_variant_id": None,
        }
        if p.free_trial is not None:
            out["free_trial"] = {
                "duration_length": p.free_trial.length,
                "duration_type": p.free_trial.duration,
                "card_required": p.free_trial.card_required,
            }
        return out

    def event(self, ev: Event, customer_id: str) -> Json:
        return {
            "id": ev.id,
            "timestamp": ms(ev.timestamp),
            "feature_id": ev.feature_id or ev.event_name or "",
            "event_name": ev.event_name,
            "customer_id": ev.customer_id or customer_id,
            "entity_id": ev.entity_id,
            "value": num(ev.value),
            "properties": dict(ev.properties),
            "deductions": None,
        }
