"""The customer's credit (P12): derived from the invoices, spent by the next positive ones."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from autumn_core.app.billing.lines import line, total
from autumn_core.app.unit import Unit
from autumn_core.model import ZERO, CustomerState, InvoiceLineRecord, InvoiceRecord

#: The description of the line that spends the customer's credit on an invoice (P12).
CREDIT_LINE = "Applied credit balance"


def is_credit_line(ln: InvoiceLineRecord) -> bool:
    return ln.product_id is None and ln.feature_id is None and ln.description == CREDIT_LINE


def credit_balance(invoices: Iterable[InvoiceRecord]) -> Decimal:
    """P12, derived from the invoices alone (no counter is kept): what the negative invoices
    credited, less what credit lines have spent since. Void invoices count for nothing, so a
    voided charge gives back the credit it had taken."""
    balance = ZERO
    for inv in invoices:
        if inv.status == "void":
            continue
        if inv.total < 0:
            balance -= inv.total
        balance += sum((ln.amount for ln in inv.lines if is_credit_line(ln)), ZERO)
    return max(ZERO, balance)


def customer_credit(unit: Unit, state: CustomerState) -> Decimal:
    """The customer's credit now: stored invoices plus those this unit has not saved yet."""
    seen: dict[str, InvoiceRecord] = {i.id: i for i in unit.tx.list_invoices(state.pk)}
    for inv in unit.invoices:
        if inv.customer_pk == state.pk:
            seen[inv.id] = inv
    return credit_balance(seen.values())


def with_credit(
    unit: Unit, state: CustomerState, lines: Sequence[InvoiceLineRecord]
) -> list[InvoiceLineRecord]:
    """P12: a positive invoice spends the customer's credit, up to its total, as one line."""
    out = list(lines)
    gross = total(out)
    if gross <= 0 or any(is_credit_line(ln) for ln in out):
        return out
    available = customer_credit(unit, state)
    if available <= 0:
        return out
    return [*out, line(CREDIT_LINE, -min(available, gross), product_id=None)]


def to_collect(lines: Sequence[InvoiceLineRecord]) -> tuple[InvoiceLineRecord, ...]:
    """What the gateway is asked to collect: the (net) lines, or nothing for a credit.

    The engine keeps the credit (P12) and spends it on the next invoices itself, so a negative
    total is never sent as money: the provider would otherwise hold the same credit twice.
    """
    return tuple(lines) if total(lines) >= 0 else ()
