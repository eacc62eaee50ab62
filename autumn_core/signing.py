"""Signed webhook bodies: HMAC-SHA256 over ``"<timestamp>.<body>"`` (Stripe's scheme).

The library checks the payment provider's webhooks with it (``autumn_stripe``) and signs its own
outgoing webhooks with it (docs/rules.md EO5), so an application verifies an Autumn webhook the
way it would verify a Stripe one:
``<Header>: t=<unix seconds>,v1=<hex hmac-sha256(secret, "<t>.<body>")>[,v1=...]``. Any one of
several ``v1`` signatures may match (two are sent while a secret is being rolled), and a
timestamp further than ``tolerance`` seconds from the receiver's clock, in either direction, is
refused: a replay window must not be extendable by a skewed signer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from autumn_core.errors import WebhookSignatureError

DEFAULT_TOLERANCE = 300
#: The header carrying the signature of the library's own webhooks.
AUTUMN_SIGNATURE_HEADER = "Autumn-Signature"


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``v1`` signature of ``payload`` signed at ``timestamp``."""
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """A complete header value: ``t=<timestamp>,v1=<signature>``."""
    return f"t={timestamp},v1={sign(payload, secret, timestamp)}"


def verify(
    payload: bytes,
    header: str | None,
    secret: str,
    *,
    now: Callable[[], float],
    tolerance: int = DEFAULT_TOLERANCE,
    header_name: str = AUTUMN_SIGNATURE_HEADER,
) -> int:
    """Check ``header`` against ``payload``; return the signed timestamp.

    Raises ``WebhookSignatureError`` for a missing or malformed header, no matching ``v1``
    signature (tampered payload or wrong secret), or a timestamp further than ``tolerance``
    seconds from ``now()`` in either direction.

    Example:
        ```python
        import time
        from autumn_core.signing import verify
        verify(request.body, request.headers["Autumn-Signature"], secret, now=time.time)
        ```
    """
    if not header:
        raise WebhookSignatureError(f"missing {header_name} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookSignatureError(f"malformed {header_name} element {part!r}")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookSignatureError(
                    f"malformed {header_name} timestamp {value!r}"
                ) from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None:
        raise WebhookSignatureError(f"{header_name} header has no timestamp (t=...)")
    if not candidates:
        raise WebhookSignatureError(f"{header_name} header has no v1 signature")
    expected = sign(payload, secret, timestamp)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise WebhookSignatureError(
            f"no v1 signature in the {header_name} header matches the payload "
            "(payload altered, or signed with another webhook secret)"
        )
    skew = now() - timestamp
    if abs(skew) > tolerance:
        raise WebhookSignatureError(
            f"{header_name} timestamp {timestamp} is {abs(skew):.0f} s from the wall clock "
            f"(tolerance {tolerance} s): refusing a possible replay"
        )
    return timestamp


__all__ = [
    "AUTUMN_SIGNATURE_HEADER",
    "DEFAULT_TOLERANCE",
    "sign",
    "signature_header",
    "verify",
]
