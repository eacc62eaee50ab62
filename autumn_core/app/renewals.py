"""Product transitions due by ``now``: renewals, trial ends, scheduled switches, cancellations.

The lifecycle layer (attach, trials, cancel, invoices) owns these rules (DOMAIN.md S7, T7, A4, X2).
"""

from __future__ import annotations

from autumn_core.app.unit import Unit
from autumn_core.model import CustomerState


def advance_products(unit: Unit, state: CustomerState) -> CustomerState:
    return state
