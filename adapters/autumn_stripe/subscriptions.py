"""Stripe subscriptions: one per billing cycle, created, updated without Stripe prorations,
or canceled to mirror the customer's recurring prices (W6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import stripe

from autumn_core.ports import ChargeRequest
from autumn_stripe.catalog import StripeCatalog
from autumn_stripe.errors import translate
from autumn_stripe.plumbing import LIVE_SUB, MAX_KEY, FirstTaken, PlanItem, PricedLine, as_dict


class StripeSubscriptions(StripeCatalog):
    """Stripe subscriptions: one per billing cycle, created, updated without Stripe prorations,"""

    def subscriptions(self, gateway_customer_id: str) -> dict[str, dict[str, Any]]:
        """The customer's live library-managed subscriptions, by billing cycle."""
        listed = self._call(
            "subscription lookup",
            self.client.v1.subscriptions.list,
            {"customer": gateway_customer_id, "limit": 100},
        )
        found: dict[str, dict[str, Any]] = {}
        for sub in listed.data:
            data = as_dict(sub)
            cycle = (data.get("metadata") or {}).get("autumn_cycle")
            if cycle and data.get("status") in LIVE_SUB:
                found.setdefault(cycle, data)
        return found

    @staticmethod
    def _sub_items(sub: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list((sub.get("items") or {}).get("data") or [])

    @staticmethod
    def _plan_of(item: Mapping[str, Any]) -> dict[str, Any]:
        plan = item.get("plan") or item.get("price") or {}
        return plan if isinstance(plan, dict) else {"id": plan}

    def _update_ops(
        self, sub: Mapping[str, Any], wanted: Sequence[PlanItem]
    ) -> list[dict[str, Any]]:
        """Item changes turning ``sub`` into ``wanted``; a replaced plan reuses the old item."""
        current = {self._plan_of(it).get("id"): it for it in self._sub_items(sub)}
        wanted_ids = {w.plan_id for w in wanted}
        ops: list[dict[str, Any]] = []
        added: list[PlanItem] = []
        for w in wanted:
            existing = current.get(w.plan_id)
            if existing is None:
                added.append(w)
            elif int(existing.get("quantity") or 1) != w.quantity:
                ops.append({"id": existing["id"], "plan": w.plan_id, "quantity": w.quantity})
        removed = [it for pid, it in current.items() if pid not in wanted_ids]
        for old, new in zip(removed, added, strict=False):
            ops.append(
                {
                    "id": old["id"],
                    "plan": new.plan_id,
                    "quantity": new.quantity,
                    "metadata": self._item_metadata(new),
                }
            )
        for old in removed[len(added) :]:
            ops.append({"id": old["id"], "deleted": True})
        for new in added[len(removed) :]:
            ops.append(
                {
                    "plan": new.plan_id,
                    "quantity": new.quantity,
                    "metadata": self._item_metadata(new),
                }
            )
        return ops

    @staticmethod
    def _item_metadata(item: PlanItem) -> dict[str, str]:
        return {"autumn_product_id": item.product_id, "autumn_feature_id": item.feature_id or ""}

    def _create_subscription(
        self,
        customer: str,
        cycle: str,
        items: Sequence[PlanItem],
        key: str,
        *,
        trial_end: int | None,
        first: bool = False,
    ) -> dict[str, Any]:
        """Create the cycle's subscription (its first invoice is paid now or it fails now).

        ``first``: no live subscription of this cycle was known (listed, or the customer was
        just created). The request then carries the per-customer key
        ``autumn-first-subscription:<customer>:<cycle>`` instead of the operation's, so two
        operations that both believe the customer has none (one skipped the list because it
        had just created the customer, the other listed before the first subscription existed)
        cannot both create one: Stripe refuses the second use of that key with other
        parameters, and ``FirstTaken`` makes the charge re-plan from a fresh list. The same
        operation retried sends the same parameters and gets Stripe's first answer back.
        """
        params: dict[str, Any] = {
            "customer": customer,
            "items": [
                {"plan": i.plan_id, "quantity": i.quantity, "metadata": self._item_metadata(i)}
                for i in items
            ],
            # autumn_created_by: a retry of the same operation recognises its own subscription
            # (and that the first invoice already collected the request) instead of charging.
            "metadata": {"autumn_cycle": cycle, "autumn_created_by": key[:500]},
            # Charge now or fail now: never leave an unpaid subscription behind a charge call.
            "payment_behavior": "error_if_incomplete",
        }
        if trial_end is not None:
            params["trial_end"] = trial_end
        options: stripe.RequestOptions = (
            {"idempotency_key": f"autumn-first-subscription:{customer}:{cycle}"[:MAX_KEY]}
            if first
            else self._key(key, f"subscription:{cycle}")
        )
        try:
            created = self.client.v1.subscriptions.create(cast(Any, params), options)
        except stripe.IdempotencyError as exc:
            if first:
                raise FirstTaken(cycle) from exc
            raise translate(exc, "subscription creation") from exc
        except stripe.StripeError as exc:
            raise translate(exc, "subscription creation") from exc
        return as_dict(created)

    def _update_subscription(
        self, sub: Mapping[str, Any], ops: list[dict[str, Any]], key: str
    ) -> None:
        # autumn_updated_by: find_charge can tell that this operation reached Stripe.
        params: dict[str, Any] = {"items": ops, "metadata": {"autumn_updated_by": key[:500]}}
        if self.send_proration_behavior:
            params["proration_behavior"] = "none"  # the library's lines carry the prorations
        self._call(
            "subscription update",
            self.client.v1.subscriptions.update,
            sub["id"],
            cast(Any, params),
            self._key(key, f"subscription-update:{sub['id']}"),
        )
        if not self.send_proration_behavior:
            self._drop_provider_prorations(str(sub["customer"]), str(sub["id"]))

    def _drop_provider_prorations(self, customer: str, subscription_id: str) -> None:
        """Delete proration items the server made on its own (it ignored "none")."""
        for item in self._pending_items(customer):
            if (
                item.get("proration")
                and item.get("subscription") == subscription_id
                and not (item.get("metadata") or {}).get("autumn_invoice_id")
            ):
                self._call(
                    "proration cleanup", self.client.v1.invoice_items.delete, str(item["id"])
                )

    def _cancel(self, sub: Mapping[str, Any], key: str) -> None:
        self._call(
            "subscription cancel",
            self.client.v1.subscriptions.cancel,
            str(sub["id"]),
            None,
            self._key(key, f"cancel:{sub['id']}"),
        )

    def cancel_subscription(self, gateway_customer_id: str, *, idempotency_key: str) -> None:
        """Cancel every library-managed subscription of the customer, without Stripe prorations."""
        self._take_fresh(gateway_customer_id)
        for sub in self.subscriptions(gateway_customer_id).values():
            self._cancel(sub, idempotency_key)

    def _pending_items(self, customer: str) -> list[dict[str, Any]]:
        listed = self._call(
            "invoice item lookup",
            self.client.v1.invoice_items.list,
            {"customer": customer, "limit": 100},
        )
        # Filtered here rather than with ``pending=true``: localstripe rejects that parameter.
        return [d for d in (as_dict(i) for i in listed.data) if not d.get("invoice")]

    def _sync_existing(
        self,
        request: ChargeRequest,
        existing: Mapping[str, Mapping[str, Any]],
        wanted: Mapping[str, Sequence[PlanItem]],
        created: Mapping[str, Any],
        key: str,
    ) -> None:
        """Update or cancel the subscriptions that existed before this charge."""
        if request.recurring is None:
            return
        for cycle, sub in existing.items():
            if cycle in created:
                continue
            if not wanted.get(cycle):
                self._cancel(sub, key)
                continue
            ops = self._update_ops(sub, wanted[cycle])
            if ops:
                self._update_subscription(sub, ops, key)

    def _drop_renewed(
        self, lines: list[PricedLine], subs: Mapping[str, Mapping[str, Any]]
    ) -> list[PricedLine]:
        """Drop renewal lines that a live subscription item bills by itself."""
        left = list(lines)
        for sub in subs.values():
            for item in self._sub_items(sub):
                plan = self._plan_of(item)
                meta = plan.get("metadata") or {}
                full = int(plan.get("amount") or 0) * int(item.get("quantity") or 1)
                match = next(
                    (
                        ln
                        for ln in left
                        if ln.line.product_id == meta.get("autumn_product_id")
                        and (ln.line.feature_id or "") == meta.get("autumn_feature_id", "")
                        and ln.amount == full
                    ),
                    None,
                )
                if match is not None:
                    left.remove(match)
        return left

    @staticmethod
    def _billed_by(
        subs: Mapping[str, Mapping[str, Any]], wanted: Mapping[str, Sequence[PlanItem]]
    ) -> dict[str, str]:
        """``ChargeOutcome.subscriptions``: each product of ``recurring`` -> the subscription of
        its cycle that now holds its items (created, updated, or already in step).

        Empty for a charge without ``recurring`` (nothing was created or changed). A cycle whose
        subscription was not created (a charge left ``requires_action`` before a trialing
        subscription was made) names nothing; the engine then keeps what it knew.
        """
        out: dict[str, str] = {}
        for cycle, items in wanted.items():
            sub_id = (subs.get(cycle) or {}).get("id")
            if not sub_id:
                continue
            for item in items:
                out.setdefault(item.product_id, str(sub_id))
        return out

    @staticmethod
    def _cover(lines: list[PricedLine], items: Sequence[PlanItem]) -> list[PricedLine] | None:
        """Lines left once each item's full price is matched by a line, or None if one is not."""
        left = list(lines)
        for item in items:
            match = next(
                (
                    ln
                    for ln in left
                    if ln.line.product_id == item.product_id
                    and ln.line.feature_id == item.feature_id
                    and ln.amount == item.full_amount
                ),
                None,
            )
            if match is None:
                return None
            left.remove(match)
        return left

    def _period_end(self, request: ChargeRequest, item: PlanItem) -> int:
        """When Stripe should first bill a subscription the library did not charge now.

        The engine says so with ``request.period_end`` (older engines: ``metadata["period_end"]``,
        unix seconds); otherwise the period is taken to start now.
        """
        if request.period_end is not None:
            return int(request.period_end.timestamp())
        raw = request.metadata.get("period_end")  # engines from before ChargeRequest.period_end
        if raw:
            return int(float(raw))
        days = {"day": 1, "week": 7, "month": 30, "year": 365}[item.interval]
        return int(self._clock()) + days * item.interval_count * 86400
