"""Charges: invoice items and an invoice (or a PaymentIntent), paid off-session; a decline is
an outcome, undone at Stripe, and an outage an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import stripe

from autumn_core.errors import PaymentFailed
from autumn_core.ports import ChargeOutcome, ChargeRequest
from autumn_stripe.errors import translate
from autumn_stripe.plumbing import (
    SELF_RENEWING,
    Declined,
    FirstTaken,
    NoPaymentMethod,
    PlanItem,
    PricedLine,
    as_dict,
    minor_units,
)
from autumn_stripe.subscriptions import StripeSubscriptions


class StripeCharges(StripeSubscriptions):
    """Charges: invoice items and an invoice (or a PaymentIntent), paid off-session; a decline is"""

    def _add_items(
        self, request: ChargeRequest, lines: Sequence[PricedLine], currency: str
    ) -> None:
        for ln in lines:
            self._call(
                "invoice item creation",
                self.client.v1.invoice_items.create,
                {
                    "customer": request.gateway_customer_id,
                    "amount": ln.amount,
                    "currency": currency,
                    "description": ln.line.description,
                    "metadata": {
                        "autumn_invoice_id": request.invoice_id,
                        "autumn_charge_key": request.idempotency_key[:500],
                        "autumn_line": str(ln.index),
                        "autumn_product_id": ln.line.product_id or "",
                        "autumn_feature_id": ln.line.feature_id or "",
                    },
                },
                self._key(request.idempotency_key, f"item:{ln.index}"),
            )

    def _invoice_and_pay(self, request: ChargeRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "customer": request.gateway_customer_id,
            "pending_invoice_items_behavior": "include",
            "metadata": {
                **request.metadata,
                "autumn_invoice_id": request.invoice_id,
                "autumn_charge_key": request.idempotency_key[:500],
            },
        }
        if request.description:
            params["description"] = request.description
        invoice = as_dict(
            self._call(
                "invoice creation",
                self.client.v1.invoices.create,
                cast(Any, params),
                self._key(request.idempotency_key, "invoice"),
            )
        )
        if self.finalize_invoices:
            invoice = as_dict(
                self._call(
                    "invoice finalization",
                    self.client.v1.invoices.finalize_invoice,
                    invoice["id"],
                    None,
                    self._key(request.idempotency_key, "finalize"),
                )
            )
        if invoice.get("status") == "paid":
            return invoice  # credits on the customer covered it: Stripe settled it on finalize
        try:
            try:
                paid = self.client.v1.invoices.pay(
                    invoice["id"], None, self._key(request.idempotency_key, "pay")
                )
            except stripe.InvalidRequestError as exc:
                # Stripe refuses to pay an invoice when the customer has no *default* payment
                # method. A card saved by a Checkout Session is attached but not the default:
                # has_payment_method promotes it, then the payment is tried once more. With no
                # card at all the invoice is left open for the customer (CO4). What this
                # instance remembered about the customer's card was wrong: ask Stripe.
                self.forget(request.gateway_customer_id)
                if not self.has_payment_method(request.gateway_customer_id):
                    raise NoPaymentMethod(invoice) from exc
                paid = self.client.v1.invoices.pay(
                    invoice["id"], None, self._key(request.idempotency_key, "pay-default-pm")
                )
        except stripe.StripeError as exc:
            error = translate(exc, "invoice payment")
            if isinstance(error, PaymentFailed):
                raise Declined(error.message, str(invoice["id"])) from exc
            raise error from exc
        return as_dict(paid)

    def _pay_intent(self, request: ChargeRequest, amount: int, currency: str) -> dict[str, Any]:
        """Collect ``amount`` with one confirmed off-session PaymentIntent."""
        method = self._default_payment_method(request.gateway_customer_id)
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "customer": request.gateway_customer_id,
            "metadata": {
                "autumn_invoice_id": request.invoice_id,
                "autumn_charge_key": request.idempotency_key[:500],
                "description": request.description
                or "; ".join(ln.description for ln in request.lines)[:450],
            },
        }
        if method is not None:
            params.update(payment_method=method, confirm=True, off_session=True)
        return as_dict(
            self._call(
                "payment",
                self.client.v1.payment_intents.create,
                cast(Any, params),
                self._key(request.idempotency_key, "payment"),
            )
        )

    @staticmethod
    def _intent_failure(intent: Mapping[str, Any]) -> str:
        error = intent.get("last_payment_error") or {}
        if error.get("message"):
            return f"card declined: {error['message']}"
        return f"Stripe payment {intent.get('id')} ended {intent.get('status')}"

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        """Collect ``request.total`` now and keep the subscription(s) in step with ``recurring``.

        Order matters for "nothing changes when the charge did not happen": money is collected
        first (new subscription and/or invoice), and existing subscriptions are changed only
        after it succeeded.

        The customer's subscriptions are listed first, except for a customer this instance has
        just created (it has none); a first subscription is created under a per-customer key
        (see ``_create_subscription``) so that shortcut can never make a second one.

        With ``recurring``, the outcome's ``subscriptions`` maps each of its products to the
        subscription of its cycle (see ``_billed_by``). ``ChargeRequest`` carries no stored
        subscription ids back, so they cannot replace the list (a field is proposed in the
        README's known limits).
        """
        customer = request.gateway_customer_id
        fresh = self._take_fresh(customer)
        try:
            try:
                outcome = self._charge(request, known={} if fresh else None, first_keys=True)
            except FirstTaken:
                outcome = self._charge(request, known=None, first_keys=False)
        except BaseException:
            self.forget(customer)
            raise
        if outcome.status != "paid":
            self.forget(customer)
        return outcome

    def _charge(
        self,
        request: ChargeRequest,
        *,
        known: dict[str, dict[str, Any]] | None,
        first_keys: bool,
    ) -> ChargeOutcome:
        """``charge`` given the live subscriptions when already ``known`` (else listed)."""
        currency = (request.currency or self.currency).lower()
        customer = request.gateway_customer_id
        key = request.idempotency_key
        lines = [
            PricedLine(i, line, minor_units(line.amount, currency))
            for i, line in enumerate(request.lines)
        ]
        lines = [ln for ln in lines if ln.amount != 0]
        if known is not None:
            existing = dict(known)
        elif request.recurring is not None or lines:
            existing = self.subscriptions(customer)
        else:
            existing = {}

        wanted: dict[str, list[PlanItem]] = {}
        if request.recurring is not None:
            for item in self._items(request.recurring, currency):
                self.ensure_plan(item)
                wanted.setdefault(item.cycle, []).append(item)
            to_create = {c: its for c, its in wanted.items() if c not in existing}
        else:
            to_create = {}
            if request.reason in SELF_RENEWING:
                lines = self._drop_renewed(lines, existing)

        # A retry of an operation whose subscription was already created (the process died
        # after Stripe answered): that subscription's first invoice collected the whole request.
        replayed = [
            sub
            for cycle, sub in existing.items()
            if (sub.get("metadata") or {}).get("autumn_created_by") == key[:500] and cycle in wanted
        ]
        if replayed:
            to_create = {}
            lines = []

        # New subscriptions whose first invoice collects exactly what the lines ask for them.
        sweeping: dict[str, list[PlanItem]] = {}
        trialing: dict[str, list[PlanItem]] = {}
        for cycle, items in to_create.items():
            covered = self._cover(lines, items)
            if covered is None:
                trialing[cycle] = items
            else:
                sweeping[cycle] = items
                lines = covered

        rest = sum(ln.amount for ln in lines)
        by_intent = self.one_off == "payment_intent" and not sweeping and rest > 0
        try:
            if not by_intent:
                self._add_items(request, lines, currency)
            invoice_id: str | None = (
                self._id(replayed[0].get("latest_invoice")) if replayed else None
            )
            for cycle, items in sweeping.items():
                sub = self._create_subscription(
                    customer, cycle, items, key, trial_end=None, first=first_keys
                )
                existing[cycle] = sub
                if sub.get("status") == "incomplete":
                    self._undo_failed(request, sub=sub, invoice_id=sub.get("latest_invoice"))
                    return ChargeOutcome(status="failed", message=self._failure_message(sub))
                invoice_id = invoice_id or self._id(sub.get("latest_invoice"))
            if by_intent:
                intent = self._pay_intent(request, rest, currency)
                invoice_id = str(intent["id"])
                if intent.get("status") == "requires_payment_method" and not intent.get(
                    "last_payment_error"
                ):
                    self._sync_existing(request, existing, wanted, to_create, key)
                    return ChargeOutcome(
                        status="requires_action",
                        gateway_invoice_id=invoice_id,
                        message="no payment method on file; the payment is left open",
                        subscriptions=self._billed_by(existing, wanted),
                    )
                if intent.get("status") != "succeeded":
                    return ChargeOutcome(
                        status="failed",
                        gateway_invoice_id=invoice_id,
                        message=self._intent_failure(intent),
                    )
            elif not sweeping and rest > 0:
                invoice = self._invoice_and_pay(request)
                invoice_id = str(invoice["id"])
                if invoice.get("status") != "paid":
                    return self._unpaid(request, invoice)
        except NoPaymentMethod as exc:
            self._sync_existing(request, existing, wanted, to_create, key)
            return ChargeOutcome(
                status="requires_action",
                gateway_invoice_id=str(exc.invoice["id"]),
                checkout_url=exc.invoice.get("hosted_invoice_url"),
                message="no payment method on file; the invoice is open for the customer to pay",
                subscriptions=self._billed_by(existing, wanted),
            )
        except Declined as exc:
            self._undo_failed(request, sub=None, invoice_id=exc.invoice_id)
            return ChargeOutcome(
                status="failed", gateway_invoice_id=exc.invoice_id, message=exc.message
            )
        except PaymentFailed as exc:
            self._undo_failed(request, sub=None, invoice_id=None)
            return ChargeOutcome(status="failed", message=exc.message)

        # Paid (or nothing to collect now): bring the rest of the subscriptions in step.
        for cycle, items in trialing.items():
            trial_end = self._period_end(request, items[0])
            existing[cycle] = self._create_subscription(
                customer, cycle, items, key, trial_end=trial_end, first=first_keys
            )
        self._sync_existing(request, existing, wanted, to_create, key)
        return ChargeOutcome(
            status="paid",
            gateway_invoice_id=invoice_id,
            subscriptions=self._billed_by(existing, wanted),
        )

    def _failure_message(self, sub: Mapping[str, Any]) -> str:
        invoice_id = self._id(sub.get("latest_invoice"))
        if invoice_id:
            invoice = self._get_or_none(
                "invoice lookup", self.client.v1.invoices.retrieve, invoice_id
            )
            if invoice is not None:
                return self._invoice_failure(invoice)
        return "Stripe could not collect the subscription's first payment"

    def _invoice_failure(self, invoice: Mapping[str, Any]) -> str:
        pi_id = self._id(invoice.get("payment_intent"))
        if pi_id:
            pi = self._get_or_none("payment lookup", self.client.v1.payment_intents.retrieve, pi_id)
            error = (pi or {}).get("last_payment_error") or {}
            if error.get("message"):
                return f"card declined: {error['message']}"
            charge = (pi or {}).get("latest_charge")
            if isinstance(charge, dict) and charge.get("failure_message"):
                return f"card declined: {charge['failure_message']}"
        return f"Stripe invoice {invoice.get('id')} was not paid (status {invoice.get('status')})"

    def _unpaid(self, request: ChargeRequest, invoice: Mapping[str, Any]) -> ChargeOutcome:
        """The pay call returned without paying (a decline some servers report this way)."""
        message = self._invoice_failure(invoice)
        self._undo_failed(request, sub=None, invoice_id=str(invoice["id"]))
        return ChargeOutcome(
            status="failed", gateway_invoice_id=str(invoice["id"]), message=message
        )

    def _undo_failed(
        self, request: ChargeRequest, *, sub: Mapping[str, Any] | None, invoice_id: Any
    ) -> None:
        """Remove what a declined charge left at Stripe so it can never be collected later."""
        key = request.idempotency_key
        if sub is not None:
            self._cancel(sub, key)
        inv = self._id(invoice_id)
        if inv is None:
            # No invoice holds the request's items (Stripe refused the subscription outright):
            # delete them, or they would ride on the customer's next invoice.
            for pending in self._pending_items(request.gateway_customer_id):
                if (pending.get("metadata") or {}).get("autumn_invoice_id") == request.invoice_id:
                    self._call(
                        "invoice item cleanup",
                        self.client.v1.invoice_items.delete,
                        str(pending["id"]),
                    )
            return
        invoice = self._get_or_none("invoice lookup", self.client.v1.invoices.retrieve, inv)
        if invoice is not None and invoice.get("status") in ("draft", "open"):
            self._call(
                "invoice void",
                self.client.v1.invoices.void_invoice,
                inv,
                None,
                self._key(key, "void"),
            )
