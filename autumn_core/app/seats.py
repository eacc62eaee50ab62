"""Paid seats of usage-billed allocated rows (DOMAIN.md P7). Billing belongs to the lifecycle layer."""

from __future__ import annotations

from collections.abc import Sequence

from autumn_core.app.unit import Unit
from autumn_core.model import CustomerState


def settle_seats(unit: Unit, state: CustomerState, row_ids: Sequence[str]) -> CustomerState:
    return state
