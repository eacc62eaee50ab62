"""Autumn's error bodies and status codes, and the one place library errors are mapped to them.

Autumn answers every failure with ``{"message", "code", "env"}``; the status and the code
follow its server (``shared/api/errors``). A library ``AutumnError`` is translated by
``wire_error`` only, so the API app, the frontend handler and the framework integrations all
answer the same way for the same fault.
"""

from __future__ import annotations

from autumn_core import errors as e


class WireError(Exception):
    """A failure that is answered as an Autumn error body with this status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self, env: str | None) -> dict[str, str]:
        out = {"message": self.message, "code": self.code}
        if env is not None:
            out["env"] = env
        return out


def invalid_inputs(message: str) -> WireError:
    """A body that does not match the route's schema (Autumn's Zod failure)."""
    return WireError(400, "invalid_inputs", message)


#: Most specific class first: the first ``isinstance`` match wins.
_MAP: tuple[tuple[type[e.AutumnError], int, str], ...] = (
    (e.CustomerNotFound, 404, "customer_not_found"),
    (e.EntityNotFound, 404, "entity_not_found"),
    (e.FeatureNotFound, 404, "feature_not_found"),
    (e.ProductNotFound, 404, "product_not_found"),
    (e.LockNotFound, 404, "lock_not_found"),
    (e.NotFound, 404, "not_found"),
    (e.IdempotencyConflict, 409, "duplicate_idempotency_key"),
    (e.EntityAlreadyExists, 409, "entity_already_exists"),
    (e.ProductAlreadyAttached, 400, "customer_already_has_product"),
    (e.LockExpired, 409, "lock_expired"),
    (e.Conflict, 409, "conflict"),
    (e.InsufficientBalance, 400, "insufficient_balance"),
    (e.PaymentFailed, 400, "payment_failed"),
    (e.PaymentError, 400, "payment_failed"),
    (e.GatewayError, 502, "payment_provider_error"),
    (e.StoreError, 503, "service_unavailable"),
    (e.InvalidRequest, 400, "invalid_request"),
)


def wire_error(exc: e.AutumnError) -> WireError:
    """The Autumn status and code for a library error; the message is the library's."""
    for cls, status, code in _MAP:
        if isinstance(exc, cls):
            return WireError(status, code, exc.message)
    return WireError(400, "invalid_request", exc.message)


def internal_error() -> WireError:
    return WireError(500, "internal_error", "Internal server error")
