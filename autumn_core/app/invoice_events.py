"""``invoice.paid`` and ``invoice.payment_failed`` (docs/rules.md EO6): emitted by the unit that
records the payment's outcome, so they exist exactly when that outcome is committed."""

from __future__ import annotations

from autumn_core.app.unit import Unit
from autumn_core.model import InvoiceRecord
from autumn_core.outbound import INVOICE_PAID, INVOICE_PAYMENT_FAILED, millis


def emit_invoice(
    unit: Unit, customer_id: str | None, invoice: InvoiceRecord, *, paid: bool, reason: str
) -> None:
    """``reason``: what the invoice is for (``ChargeRequest.reason``: "attach", "renewal", ...,
    "auto_topup") or "provider" for a payment the provider reported."""
    products = sorted({ln.product_id for ln in invoice.lines if ln.product_id is not None})
    unit.emit(
        INVOICE_PAID if paid else INVOICE_PAYMENT_FAILED,
        {
            "reason": reason,
            "invoice": {
                "id": invoice.id,
                "status": invoice.status,
                "total": invoice.total,
                "currency": invoice.currency,
                "gateway_invoice_id": invoice.gateway_invoice_id,
                "product_ids": products,
                "created_at": millis(invoice.created_at),
            },
        },
        customer_id=customer_id,
    )
