"""Invoices and charging, the services the use cases bill with:

- ``lines``: the invoice lines a product owes (in advance, in arrears, at a renewal) and the
  invoice records;
- ``credits``: the customer's credit (P12), derived from the invoices;
- ``charging``: sending lines to the gateway and what the charge learnt;
- ``saga``: the operation ``Driver`` that defers a charge, records it, sends it, then commits.

The names below are the ones the use cases call (``billing.charge``, ``billing.cycle_lines``...).
"""

from autumn_core.app.billing.charging import (
    SUBSCRIPTION_REF,
    Sent,
    adopt,
    charge,
    dry_run,
    ensure_gateway_customer,
    has_payment_method,
    is_dry_run,
    record_subscriptions,
)
from autumn_core.app.billing.credits import (
    CREDIT_LINE,
    with_credit,
)
from autumn_core.app.billing.lines import (
    adjustment_lines,
    advance_lines,
    arrears_lines,
    cycle_lines,
    invoice_view,
    is_recurring_live,
    line,
    new_invoice,
    product_of,
    recurring_prices,
    total,
)
from autumn_core.app.billing.saga import (
    OPERATION,
    Driver,
    Resolved,
    drive,
    driven,
    find_charge,
)

__all__ = [
    "CREDIT_LINE",
    "OPERATION",
    "SUBSCRIPTION_REF",
    "Driver",
    "Resolved",
    "Sent",
    "adjustment_lines",
    "adopt",
    "advance_lines",
    "arrears_lines",
    "charge",
    "cycle_lines",
    "drive",
    "driven",
    "dry_run",
    "ensure_gateway_customer",
    "find_charge",
    "has_payment_method",
    "invoice_view",
    "is_dry_run",
    "is_recurring_live",
    "line",
    "new_invoice",
    "product_of",
    "record_subscriptions",
    "recurring_prices",
    "total",
    "with_credit",
]
