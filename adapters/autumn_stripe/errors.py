"""The one place where ``stripe`` SDK exceptions become ``autumn_core.errors``.

Every SDK call of the gateway runs inside :func:`translated`, so callers of the gateway only ever
see ``PaymentFailed`` (the card was declined: retrying will not help, the customer must act) or
``GatewayError`` (Stripe failed or could not be reached: the message says what to do next).
Nothing else leaks, which keeps the engine's rule "the provider failed → nothing local changes"
a single ``except GatewayError`` away.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import stripe

from autumn_core.errors import GatewayError, PaymentFailed

_RETRY_SAME_KEY = (
    "retry the same call later: every Stripe write carries a deterministic idempotency key, "
    "so a retry cannot charge twice"
)


def _detail(exc: stripe.StripeError) -> str:
    parts = [exc.user_message or str(exc) or type(exc).__name__]
    if exc.http_status is not None:
        parts.append(f"HTTP {exc.http_status}")
    if exc.code:
        parts.append(f"code {exc.code}")
    if exc.request_id:
        parts.append(f"request {exc.request_id}")
    return ", ".join(parts)


def translate(exc: stripe.StripeError, step: str) -> PaymentFailed | GatewayError:
    """Map one SDK exception raised during ``step`` to the library's error with next steps."""
    detail = _detail(exc)
    if isinstance(exc, stripe.CardError):
        return PaymentFailed(
            f"Stripe declined the payment during {step} ({detail}); "
            "ask the customer to update their payment method"
        )
    if isinstance(exc, stripe.RateLimitError):
        return GatewayError(
            f"Stripe rate-limited {step} ({detail}); back off, then {_RETRY_SAME_KEY}"
        )
    if isinstance(exc, stripe.APIConnectionError):
        return GatewayError(
            f"could not reach Stripe during {step} ({detail}); check the network or api_base, "
            f"then {_RETRY_SAME_KEY}"
        )
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return GatewayError(
            f"Stripe refused the API key during {step} ({detail}); check the secret key and "
            "its permissions"
        )
    if isinstance(exc, stripe.IdempotencyError):
        return GatewayError(
            f"Stripe saw an idempotency key reused with other parameters during {step} "
            f"({detail}); this is a bug in the caller: do not reuse an operation id for a "
            "different operation"
        )
    if isinstance(exc, stripe.InvalidRequestError):
        return GatewayError(
            f"Stripe rejected {step} as invalid ({detail}); the request will not succeed on "
            "retry: check the catalog's prices, currency and the Stripe object ids"
        )
    status = exc.http_status or 0
    if status >= 500 or isinstance(exc, stripe.APIError):
        return GatewayError(f"Stripe failed during {step} ({detail}); {_RETRY_SAME_KEY}")
    return GatewayError(f"Stripe error during {step} ({detail})")


@contextmanager
def translated(step: str) -> Iterator[None]:
    """Run SDK calls, re-raising any ``stripe.StripeError`` as the library's error."""
    try:
        yield
    except stripe.StripeError as exc:
        raise translate(exc, step) from exc
