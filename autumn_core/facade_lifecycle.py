"""The lifecycle part of the facade: attach, preview, cancel, invoices' provider side, events.

Kept apart from ``facade.py`` so the lifecycle layer can grow without touching check/track.
Every method validates its input first (nothing changes when it raises) and runs one use case
in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from autumn_core.app import attach as attach_uc
from autumn_core.app import billing, topups
from autumn_core.app import cancel as cancel_uc
from autumn_core.app import events as events_uc
from autumn_core.app.usage import check_customer_ref
from autumn_core.errors import AutumnError, GatewayError, InvalidRequest
from autumn_core.model import PendingRecord
from autumn_core.ports import ChargeRequest
from autumn_core.results import (
    UNSET,
    AttachPreview,
    AttachResult,
    ByEmail,
    CustomerData,
    CustomerProduct,
    GatewayEvent,
)
from autumn_core.serialization import converter

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
        free: bool = False,
        version: int | None = None,
    ) -> AttachResult:
        """Attach a product to a customer or entity (docs/rules.md A1-A7).

        Example:
            ```python
            result = billing.attach("user-1", "pro")                       # new, upgrade or downgrade
            billing.attach("user-2", "pro", version=1)                      # a grandfathered version
            billing.attach("user-1", "top_up", quantities={"messages": 1000})
            if result.checkout_url:                                         # no card on file yet
                redirect(result.checkout_url)
            ```
        """
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
            free=free,
            version=version,
        )
        if self._ctx.gateway is None:
            return self._write(lambda unit: attach_uc.attach(unit, args))
        return billing.drive(
            self._ctx, self._attach_driver(args), lambda unit: attach_uc.attach(unit, args)
        )

    def _attach_driver(self, args: attach_uc.AttachArgs) -> billing.Driver:
        return billing.Driver(
            now=self._ctx.clock.now(),
            prefixes=attach_uc.charge_prefixes(args),
            payload=attach_uc.operation_payload(args),
            customer_ref=args.customer,
            customer_data=args.customer_data,
        )

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
        free: bool = False,
        version: int | None = None,
    ) -> AttachPreview:
        """What ``attach`` would do, with the same lines; writes nothing, contacts no gateway.

        Example:
            ```python
            preview = billing.preview_attach("user-1", "enterprise")
            print(preview.scenario, preview.due_now, preview.next_cycle_total)
            ```
        """
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
            free=free,
            version=version,
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
        """X1-X6: at the period end (default) or now with a prorated credit.

        Example:
            ```python
            billing.cancel("user-1", "pro")                      # at the end of the period
            billing.cancel("user-1", "pro", immediately=True)    # now, with a prorated credit
            ```
        """
        cancel_uc.validate(customer_id, product_id, entity_id, immediately)

        def body(unit: Unit) -> CustomerProduct:
            return cancel_uc.cancel(unit, customer_id, product_id, entity_id, immediately)

        if self._ctx.gateway is None or not immediately:
            return self._write(body)
        return billing.drive(
            self._ctx, self._cancel_driver(customer_id, product_id, entity_id), body
        )

    def preview_cancel(
        self,
        customer_id: Any,
        product_id: str,
        *,
        entity_id: str | None = None,
        immediately: bool = False,
    ) -> AttachPreview:
        """What ``cancel`` would invoice now (scenario ``"cancel"``): the prorated credit lines
        of an immediate cancel, none at the period end. Writes nothing (X3).

        Example:
            ```python
            credit = billing.preview_cancel("user-1", "pro", immediately=True).due_now  # <= 0
            ```
        """
        cancel_uc.validate(customer_id, product_id, entity_id, immediately)
        return self._read(
            lambda unit: cancel_uc.preview_cancel(
                unit, customer_id, product_id, entity_id, immediately
            )
        )

    def _cancel_driver(
        self, customer_id: Any, product_id: str, entity_id: str | None
    ) -> billing.Driver:
        customer = (
            {"email": customer_id.email}
            if isinstance(customer_id, ByEmail)
            else {"id": customer_id}
        )
        return billing.Driver(
            now=self._ctx.clock.now(),
            prefixes=("cancel:",),
            payload={
                "op": "cancel",
                "customer": customer,
                "product_id": product_id,
                "entity_id": entity_id,
            },
        )

    def uncancel(
        self, customer_id: Any, product_id: str, *, entity_id: str | None = None
    ) -> CustomerProduct:
        """Take back a cancel that has not taken effect yet; returns the product.

        Example:
            ```python
            billing.uncancel("user-1", "pro")
            ```
        """
        cancel_uc.validate(customer_id, product_id, entity_id)
        return self._write(
            lambda unit: cancel_uc.uncancel(unit, customer_id, product_id, entity_id)
        )

    # -- the payment provider ---------------------------------------------------------------
    def billing_portal_url(self, customer_id: Any, return_url: str | None = None) -> str:
        """C7: needs a gateway; creates the provider-side customer when there is none yet.

        Example:
            ```python
            url = billing.billing_portal_url("user-1", return_url="https://app.example.com/billing")
            ```
        """
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
        """W1-W6: apply a provider event once, whatever the order or repetition.

        Example:
            ```python
            event = gateway.parse_webhook(request.body, request.headers["Stripe-Signature"])
            billing.handle_event(event)
            ```
        """
        events_uc.validate(event)
        self._write(lambda unit: events_uc.handle_event(unit, event))

    def recover(self, *, older_than: timedelta = timedelta(0)) -> int:
        """Settle what a crashed process left behind; return how many records were settled.

        - Pending *operations* (kind ``"operation"``): a paid attach or an immediate cancel
          records its planned charge in its own short transaction before calling the gateway.
          A process killed after that record, after the gateway call or before the local
          commit leaves the record. For each one, the gateway is asked what became of the
          charge with the SAME idempotency key (``find_charge`` when the gateway has it,
          otherwise the charge is re-driven and the gateway replays its first outcome, never
          charging twice). Collected (or left open for the customer): the operation runs again
          with that outcome and commits its local effect (product, invoice, the caller's
          idempotency key, so the caller's retry replays it). Refused, or never received by
          the provider: the record is deleted and nothing is provisioned. A record that
          cannot be completed (its product was attached meanwhile by another call, the
          customer was deleted) or whose provider is unreachable stays for a later run.
        - Checkout plans whose customer no longer exists are dropped; other checkout plans
          wait for their payment event for as long as the provider may send it.

        Safe to run at any time and from several processes: completing an operation deletes
        its record in the same transaction as the effect, so it happens once. At start-up the
        default settles every record; while other processes may be in the middle of a charge,
        pass ``older_than=timedelta(minutes=10)`` so that only abandoned operations are
        touched.

        Example:
            ```python
            billing = open("sqlite:///billing.db", catalog=catalog, gateway=gateway)
            billing.recover()   # at start-up, before serving
            ```
        """
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidRequest(f"older_than must be a non-negative timedelta, got {older_than!r}")
        cutoff = self._ctx.clock.now() - older_than
        settled = 0
        if self._ctx.gateway is not None:
            records = self._ctx.run(lambda tx: tx.list_pending(billing.OPERATION), write=False)
            for rec in records:
                if rec.created_at > cutoff:
                    continue  # maybe still in flight in a live process
                if self._recover_operation(rec):
                    settled += 1

        def body(unit: Unit) -> int:
            dropped = 0
            for rec in unit.tx.list_pending(attach_uc.CHECKOUT):
                if unit.tx.load_customer(rec.customer_pk) is None:
                    unit.tx.delete_pending(rec.key)
                    dropped += 1
            return dropped

        return settled + self._write(body)

    def _recover_operation(self, rec: PendingRecord) -> bool:
        ctx = self._ctx
        payload = rec.payload
        request = converter.structure(payload["request"], ChargeRequest)
        charge_key = str(payload["charge_key"])
        try:
            outcome = billing.find_charge(ctx, request)
        except GatewayError:
            return False  # the provider is unreachable: try again later
        if outcome is None or outcome.status == "failed":
            ctx.run(lambda tx: tx.delete_pending(rec.key), write=True)
            return True
        drv = billing.Driver(now=ctx.clock.now(), prefixes=(charge_key,), payload=dict(payload))
        drv.resolved[charge_key] = billing.Resolved(request, outcome)
        body = self._operation_body(payload)
        if body is None:
            return False
        try:
            billing.drive(ctx, drv, body)
        except AutumnError:
            return False
        return charge_key in drv.consumed

    def _operation_body(self, payload: Mapping[str, Any]) -> Callable[[Unit], Any] | None:
        ref = payload.get("customer") or {}
        customer: Any = ByEmail(ref["email"]) if "email" in ref else ref.get("id")
        if payload.get("op") == "attach":
            try:
                args = attach_uc.args_from_payload(self._ctx, payload)
            except AutumnError:
                return None
            return lambda unit: attach_uc.attach(unit, args)
        if payload.get("op") == "auto_topup":
            key = str(payload["trigger_key"])
            return lambda unit: topups.top_up(unit, key, None)
        if payload.get("op") == "cancel":
            product_id = str(payload["product_id"])
            entity_id = payload.get("entity_id")
            return lambda unit: cancel_uc.cancel(unit, customer, product_id, entity_id, True)
        return None
