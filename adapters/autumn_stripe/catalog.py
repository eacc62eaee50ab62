"""Catalog sync: the Stripe products and plans that mirror the library's recurring prices."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, cast

import stripe

from autumn_core.errors import InvalidRequest
from autumn_core.ports import RecurringPrice
from autumn_stripe.customers import StripeCustomers
from autumn_stripe.errors import translate
from autumn_stripe.plumbing import INTERVALS, ZERO_DECIMAL, PlanItem, minor_units, slug


class StripeCatalog(StripeCustomers):
    """Catalog sync: the Stripe products and plans that mirror the library's recurring prices."""

    def _items(self, recurring: Iterable[RecurringPrice], currency: str) -> list[PlanItem]:
        items: list[PlanItem] = []
        for price in recurring:
            if price.quantity <= 0 or price.unit_amount <= 0:
                continue  # nothing to bill; Stripe items need a positive quantity
            try:
                interval, factor = INTERVALS[price.interval]
            except KeyError:
                raise InvalidRequest(
                    f"interval {price.interval!r} of {price.product_id!r} has no Stripe equivalent"
                ) from None
            unit = minor_units(price.unit_amount, currency)
            exact = price.unit_amount * (1 if currency in ZERO_DECIMAL else 100)
            if price.quantity == price.quantity.to_integral_value() and exact == unit:
                amount, quantity = unit, int(price.quantity)
            else:  # fractional units or sub-cent prices: bill the line total as one unit
                amount, quantity = minor_units(price.unit_amount * price.quantity, currency), 1
            count = price.interval_count * factor
            plan_id = (
                "autumn_plan_"
                + hashlib.sha256(
                    "|".join(
                        [
                            price.product_id,
                            price.feature_id or "",
                            str(amount),
                            currency,
                            interval,
                            str(count),
                        ]
                    ).encode()
                ).hexdigest()[:24]
            )
            items.append(
                PlanItem(
                    plan_id,
                    price.product_id,
                    price.feature_id,
                    amount,
                    quantity,
                    interval,
                    count,
                    currency,
                )
            )
        return items

    def _ensure_product(self, product_id: str) -> str:
        stripe_id = "autumn_" + slug(product_id)
        if stripe_id in self._known_products:
            return stripe_id
        found = self._get_or_none("product lookup", self.client.v1.products.retrieve, stripe_id)
        if found is None:
            try:
                self.client.v1.products.create(
                    {
                        "id": stripe_id,
                        "name": product_id,
                        "metadata": {"autumn_product_id": product_id},
                    },
                    {"idempotency_key": f"autumn-product:{stripe_id}"},
                )
            except stripe.StripeError as exc:
                # Another process created it between our lookup and create: that is fine.
                if (
                    self._get_or_none("product lookup", self.client.v1.products.retrieve, stripe_id)
                    is None
                ):
                    raise translate(exc, "product creation") from exc
        with self._lock:
            self._known_products.add(stripe_id)
        return stripe_id

    def ensure_plan(self, item: PlanItem) -> str:
        """Find-or-create the Stripe plan for one fixed price (deterministic id, never twice)."""
        if item.plan_id in self._known_plans:
            return item.plan_id
        found = self._get_or_none("plan lookup", self.client.v1.plans.retrieve, item.plan_id)
        if found is None:
            product = self._ensure_product(item.product_id)
            params: dict[str, Any] = {
                "id": item.plan_id,
                "product": product,
                "amount": item.amount,
                "currency": item.currency,
                "interval": item.interval,
                "interval_count": item.interval_count,
                "nickname": f"{item.product_id}:{item.feature_id or 'base'}",
                "metadata": {
                    "autumn_product_id": item.product_id,
                    "autumn_feature_id": item.feature_id or "",
                },
            }
            try:
                self.client.v1.plans.create(
                    cast(Any, params), {"idempotency_key": f"autumn-plan:{item.plan_id}"}
                )
            except stripe.StripeError as exc:
                if (
                    self._get_or_none("plan lookup", self.client.v1.plans.retrieve, item.plan_id)
                    is None
                ):
                    raise translate(exc, "plan creation") from exc
        with self._lock:
            self._known_plans.add(item.plan_id)
        return item.plan_id
