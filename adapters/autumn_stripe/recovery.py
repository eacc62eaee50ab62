"""Recovery: what became of a charge that may have been sent (``ChargeLookup.find_charge``)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import attrs

from autumn_core.ports import ChargeOutcome, ChargeRequest
from autumn_stripe.charges import StripeCharges
from autumn_stripe.plumbing import as_dict, minor_units


class StripeRecovery(StripeCharges):
    """Recovery: what became of a charge that may have been sent (``ChargeLookup.find_charge``)."""

    def find_charge(self, request: ChargeRequest) -> ChargeOutcome | None:
        """What the charge sent with ``request.idempotency_key`` left at Stripe, or None.

        ``autumn_core.ports.ChargeLookup``: ``recover()`` asks this instead of charging again,
        so an operation whose process died before Stripe received it is rolled back rather
        than charged at recovery. Every Stripe object a charge makes or changes carries the key
        (subscription ``metadata.autumn_created_by`` / ``autumn_updated_by``, invoice, invoice
        item and PaymentIntent ``metadata.autumn_charge_key``), and lists by customer are
        strongly consistent (unlike Stripe's search), so the answer is read back from them:

        - a subscription it created: active/trialing -> paid (its first invoice);
          incomplete -> canceled here, failed;
        - its invoice: paid -> paid; open -> requires_action (the customer can pay the hosted
          invoice); draft (died before finalize/pay) -> deleted, None; void -> failed;
        - its PaymentIntent (``one_off="payment_intent"``): succeeded -> paid; not confirmed
          for lack of a card -> requires_action; declined -> failed;
        - only pending invoice items: a credit (total <= 0) -> paid; a charge that died before
          its invoice -> the items are deleted (they would ride on the next invoice), None.

        When the answer is paid or requires_action, the steps the charge takes after the money
        (keeping the other subscriptions in step with ``recurring``) are completed, since the
        process that died may not have reached them; they move no money. The answer then names
        the subscription of each product (``subscriptions``), as the charge itself would have. When nothing of the
        charge reached Stripe and it asks for no money (total <= 0: a downgrade or a cancel),
        it is simply made now, which is what the engine will record. A failed or rolled-back
        charge leaves nothing payable: open invoices voided, drafts deleted, items deleted.

        Must not run while the charge itself is still in flight in another process (it would
        undo that charge's first steps): ``recover()`` is for records whose process died.
        """
        customer = request.gateway_customer_id
        key = request.idempotency_key[:500]
        self.forget(customer)
        subs = self._call(
            "subscription lookup",
            self.client.v1.subscriptions.list,
            {"customer": customer, "status": "all", "limit": 100},
        )
        updated = False
        for sub in subs.data:
            data = as_dict(sub)
            meta = data.get("metadata") or {}
            if meta.get("autumn_updated_by") == key:
                updated = True
            if meta.get("autumn_created_by") != key:
                continue
            status = data.get("status")
            latest = self._id(data.get("latest_invoice"))
            if status in ("incomplete", "incomplete_expired", "canceled"):
                live = status == "incomplete"
                message = self._failure_message(data) if live else "the subscription was canceled"
                self._undo_failed(request, sub=data if live else None, invoice_id=latest)
                return ChargeOutcome(status="failed", gateway_invoice_id=latest, message=message)
            return ChargeOutcome(
                status="paid", gateway_invoice_id=latest, subscriptions=self._finish(request)
            )

        listed = self._call(
            "invoice lookup",
            self.client.v1.invoices.list,
            {"customer": customer, "limit": 100},
        )
        for inv in listed.data:
            data = as_dict(inv)
            if (data.get("metadata") or {}).get("autumn_charge_key") != key:
                continue
            status, inv_id = data.get("status"), str(data["id"])
            if status == "paid":
                return ChargeOutcome(
                    status="paid", gateway_invoice_id=inv_id, subscriptions=self._finish(request)
                )
            if status == "open":
                return ChargeOutcome(
                    status="requires_action",
                    gateway_invoice_id=inv_id,
                    checkout_url=data.get("hosted_invoice_url"),
                    message="the invoice is open for the customer to pay",
                    subscriptions=self._finish(request),
                )
            if status == "draft":
                self._call("invoice cleanup", self.client.v1.invoices.delete, inv_id, None)
                self._delete_items(request)
                return None
            self._delete_items(request)
            return ChargeOutcome(
                status="failed",
                gateway_invoice_id=inv_id,
                message=f"Stripe invoice {inv_id} ended {status}",
            )

        if self.one_off == "payment_intent":
            # Listed without ``customer``: localstripe refuses that filter on this endpoint.
            intents = self._call(
                "payment lookup", self.client.v1.payment_intents.list, {"limit": 100}
            )
            for pi in intents.data:
                data = as_dict(pi)
                if data.get("customer") != customer:
                    continue
                if (data.get("metadata") or {}).get("autumn_charge_key") != key:
                    continue
                pi_id, status = str(data["id"]), data.get("status")
                if status == "succeeded":
                    return ChargeOutcome(
                        status="paid", gateway_invoice_id=pi_id, subscriptions=self._finish(request)
                    )
                if data.get("last_payment_error") or status == "canceled":
                    return ChargeOutcome(
                        status="failed",
                        gateway_invoice_id=pi_id,
                        message=self._intent_failure(data),
                    )
                return ChargeOutcome(
                    status="requires_action",
                    gateway_invoice_id=pi_id,
                    message="no payment method on file; the payment is left open",
                    subscriptions=self._finish(request),
                )

        items = [
            item
            for item in self._pending_items(customer)
            if (item.get("metadata") or {}).get("autumn_charge_key") == key
        ]
        currency = (request.currency or self.currency).lower()
        asks_money = request.total > 0 and any(
            minor_units(ln.amount, currency) > 0 for ln in request.lines
        )
        if items and asks_money:
            self._delete_items(request)  # died before its invoice: nothing was collected
            return None
        if items or updated:
            # A credit's items, or subscriptions changed (only ever after the money): done.
            return ChargeOutcome(status="paid", subscriptions=self._finish(request))
        if not asks_money:
            # Nothing reached Stripe and nothing is to be collected (a downgrade, a cancel):
            # making it now moves no money and matches what the engine will record.
            return self.charge(request)
        return None

    def _finish(self, request: ChargeRequest) -> Mapping[str, str]:
        """The moneyless tail of a charge found paid: bring subscriptions in step.

        Returns which subscription now bills each product (``ChargeOutcome.subscriptions``).
        """
        if request.recurring is None:
            return {}
        tail = self._charge(
            attrs.evolve(request, lines=(), total=Decimal(0)), known=None, first_keys=False
        )
        return tail.subscriptions

    def _delete_items(self, request: ChargeRequest) -> None:
        """Delete the charge's pending invoice items (else the next invoice would bill them)."""
        key = request.idempotency_key[:500]
        for item in self._pending_items(request.gateway_customer_id):
            if (item.get("metadata") or {}).get("autumn_charge_key") == key:
                self._call(
                    "invoice item cleanup", self.client.v1.invoice_items.delete, str(item["id"])
                )
