"""The lifecycle part of the facade: attach, preview, cancel, invoices' provider side, events.

Kept apart from ``facade.py`` so the lifecycle layer can grow without touching check/track.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from autumn_core.app import attach as attach_uc
from autumn_core.results import UNSET, AttachResult, CustomerData

if TYPE_CHECKING:
    from autumn_core.app.context import Context
    from autumn_core.app.unit import Unit

T = TypeVar("T")


class LifecycleMixin:
    _ctx: Context

    def _write(self, body: Callable[[Unit], T]) -> T:  # provided by Autumn
        raise NotImplementedError

    def _read(self, body: Callable[[Unit], T]) -> T:  # provided by Autumn
        raise NotImplementedError

    # -- attach -----------------------------------------------------------------------------
    def attach(
        self,
        customer_id: Any,
        product_id: str,
        *,
        entity_id: str | None = None,
        quantities: dict[str, Any] | None = None,
        free_trial: Any = UNSET,
        success_url: str | None = None,
        force_checkout: bool = False,
        customer_data: CustomerData | None = None,
        idempotency_key: str | None = None,
    ) -> AttachResult:
        return self._write(
            lambda unit: attach_uc.attach(
                unit, customer_id, product_id, entity_id=entity_id, customer_data=customer_data
            )
        )
