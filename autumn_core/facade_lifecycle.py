"""The lifecycle part of the facade: attach, preview, cancel, invoices' provider side, events.

Kept apart from ``facade.py`` so the lifecycle layer can grow without touching check/track.
Every method validates its input first (nothing changes when it raises) and runs one use case
in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from autumn_core.app import attach as attach_uc
from autumn_core.app import billing
from autumn_core.app import cancel as cancel_uc
from autumn_core.app import events as events_uc
from autumn_core.app.usage import check_customer_ref
from autumn_core.errors import InvalidRequest
from autumn_core.results import (
    UNSET,
    AttachPreview,
    AttachResult,
    CustomerData,
    CustomerProduct,
    GatewayEvent,
)

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
        """Attach a product to a customer or entity (DOMAIN.md A1-A7)."""
        args = attach_uc.validate_attach(
            self._ctx,
            customer_id,
            product_id,
            entity_id=entity_id,
            quantities=quantities,
            free_trial=free_trial,
            success_url=success_url,
            force_checkout=force_checkout,
            customer_data=customer_data,
            idempotency_key=idempotency_key,
        )
        return self._write(lambda unit: attach_uc.attach(unit, args))

    def preview_attach(
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
    ) -> AttachPreview:
        """What ``attach`` would do, with the same lines; writes nothing, contacts no gateway."""
        args = attach_uc.validate_attach(
            self._ctx,
            customer_id,
            product_id,
            entity_id=entity_id,
            quantities=quantities,
            free_trial=free_trial,
            success_url=success_url,
            force_checkout=force_checkout,
            customer_data=customer_data,
            idempotency_key=idempotency_key,
        )
        try:
            self._write(lambda unit: attach_uc.preview_body(unit, args))
        except attach_uc.PreviewDone as done:
            return done.preview
        raise AssertionError("unreachable")  # pragma: no cover

    # -- cancel -----------------------------------------------------------------------------
    def cancel(
        self,
        customer_id: Any,
        product_id: str,
        *,
        entity_id: str | None = None,
        immediately: bool = False,
    ) -> CustomerProduct:
        """X1-X6: at the period end (default) or now with a prorated credit."""
        cancel_uc.validate(customer_id, product_id, entity_id, immediately)
        return self._write(
            lambda unit: cancel_uc.cancel(unit, customer_id, product_id, entity_id, immediately)
        )

    def uncancel(
        self, customer_id: Any, product_id: str, *, entity_id: str | None = None
    ) -> CustomerProduct:
        cancel_uc.validate(customer_id, product_id, entity_id)
        return self._write(
            lambda unit: cancel_uc.uncancel(unit, customer_id, product_id, entity_id)
        )

    # -- the payment provider ---------------------------------------------------------------
    def billing_portal_url(self, customer_id: Any, return_url: str | None = None) -> str:
        """C7: needs a gateway; creates the provider-side customer when there is none yet."""
        check_customer_ref(customer_id)
        if return_url is not None and not isinstance(return_url, str):
            raise InvalidRequest(f"return_url must be a string, got {return_url!r}")
        gateway = self._ctx.gateway
        if gateway is None:
            raise InvalidRequest("billing_portal_url needs a payment gateway (gateway=None)")

        def body(unit: Unit) -> str:
            state = unit.get(customer_id)
            _, gid = billing.ensure_gateway_customer(unit, state)
            return gateway.billing_portal_url(gid, return_url)

        return self._write(body)

    def handle_event(self, event: GatewayEvent) -> None:
        """W1-W6: apply a provider event once, whatever the order or repetition."""
        events_uc.validate(event)
        self._write(lambda unit: events_uc.handle_event(unit, event))

    def recover(self) -> int:
        """Drop checkout plans whose customer no longer exists; return how many were dropped.

        A checkout plan otherwise waits for its payment event for as long as the provider may
        send it, so nothing else is recovered here.
        """

        def body(unit: Unit) -> int:
            dropped = 0
            for rec in unit.tx.list_pending(attach_uc.CHECKOUT):
                if unit.tx.load_customer(rec.customer_pk) is None:
                    unit.tx.delete_pending(rec.key)
                    dropped += 1
            return dropped

        return self._write(body)
