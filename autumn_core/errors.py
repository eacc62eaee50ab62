"""The one exception hierarchy of autumn_core.

Every public call raises only these. Each class carries a stable snake_case ``code`` so that
callers (and HTTP layers built on top) can branch on it without parsing messages. Adapters
translate their driver's exceptions into ``StoreError`` / ``GatewayError`` in one place each.
"""

from __future__ import annotations


class AutumnError(Exception):
    """Base of every error raised by autumn_core and its adapters."""

    code: str = "autumn_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(AutumnError, ValueError):
    """The call's arguments are malformed or not allowed; nothing changed."""

    code = "invalid_request"


class InvalidCatalog(InvalidRequest):
    """The catalog breaks a rule; the message names the product and item at fault."""

    code = "invalid_catalog"


class WebhookSignatureError(InvalidRequest):
    """A payment-provider webhook failed signature verification."""

    code = "webhook_signature_invalid"


class NotFound(AutumnError, LookupError):
    code = "not_found"


class CustomerNotFound(NotFound):
    code = "customer_not_found"


class FeatureNotFound(NotFound):
    code = "feature_not_found"


class ProductNotFound(NotFound):
    code = "product_not_found"


class EntityNotFound(NotFound):
    code = "entity_not_found"


class LockNotFound(NotFound):
    """``balances.finalize`` names a lock id no check ever took."""

    code = "lock_not_found"


class Conflict(AutumnError):
    code = "conflict"


class LockExpired(Conflict):
    """The lock expired (its hold was released) before it was finalized."""

    code = "lock_expired"


class ProductAlreadyAttached(Conflict):
    code = "product_already_attached"


class EntityAlreadyExists(Conflict):
    code = "entity_already_exists"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class InsufficientBalance(AutumnError):
    code = "insufficient_balance"


class PaymentError(AutumnError):
    code = "payment_error"


class PaymentFailed(PaymentError):
    code = "payment_failed"


class GatewayError(AutumnError):
    """The payment provider failed or could not be reached."""

    code = "gateway_error"


class StoreError(AutumnError):
    """Storage failed; the operation did not happen."""

    code = "store_error"
    #: True when running the whole call again may succeed (a serialization failure, a deadlock,
    #: a lock wait); the engine re-runs such calls itself, within a bound.
    retryable: bool = False


class UniqueViolation(StoreError):
    """A store uniqueness constraint refused a write (internal: the app layer decides what it means)."""

    code = "unique_violation"


class StoreTimeout(StoreError):
    """Storage did not answer within its bound (a lock held by another session, a stalled
    server, no free connection); the operation did not happen."""

    code = "store_timeout"


class CommitOutcomeUnknown(AutumnError):
    """The connection to the store failed while it was committing, and the store could not
    find out whether the commit happened: the operation may or may not have taken effect.

    Not a ``StoreError`` (which means nothing changed): before running the call again, look
    at the state (or run it with an idempotency key, which makes the rerun safe either way)."""

    code = "commit_outcome_unknown"


__all__ = [
    "AutumnError",
    "CommitOutcomeUnknown",
    "Conflict",
    "CustomerNotFound",
    "EntityAlreadyExists",
    "EntityNotFound",
    "FeatureNotFound",
    "GatewayError",
    "IdempotencyConflict",
    "InsufficientBalance",
    "InvalidCatalog",
    "InvalidRequest",
    "LockExpired",
    "LockNotFound",
    "NotFound",
    "PaymentError",
    "PaymentFailed",
    "ProductAlreadyAttached",
    "ProductNotFound",
    "StoreError",
    "StoreTimeout",
    "UniqueViolation",
    "WebhookSignatureError",
]
