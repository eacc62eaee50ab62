"""What the framework integrations share: the gate decision and its 403 body.

A gate checks one feature for the signed-in customer before the view runs: a boolean feature
(``require_feature``) or a balance of at least ``amount`` (``require_balance``, which then
tracks ``amount`` once the response has been sent). A refusal is an Autumn-shaped body.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from autumn_core import AutumnError, CheckResult
from autumn_wire.errors import WireError, wire_error
from autumn_wire.shapes import num


class Denied(WireError):
    """The customer may not use the feature (403), or there is no signed-in customer (401)."""

    def __init__(self, status: int, code: str, message: str, result: CheckResult | None = None):
        super().__init__(status, code, message)
        self.result = result


def no_customer() -> Denied:
    return Denied(401, "no_customer_id", "no signed-in customer to check")


def decide(result: CheckResult, feature_id: str, amount: Decimal | None) -> None:
    """Raise ``Denied`` unless the check allowed the use."""
    if result.allowed:
        return
    who = result.customer_id
    if amount is None:
        raise Denied(
            403,
            "feature_not_enabled",
            f"customer {who} does not have access to feature {feature_id}",
            result,
        )
    raise Denied(
        403,
        "insufficient_balance",
        f"customer {who} does not have {num(amount)} {feature_id} left",
        result,
    )


def error_body(exc: Exception, env: str = "sandbox") -> tuple[int, dict[str, Any]]:
    """The status and Autumn body for a gate refusal or a library error."""
    err = exc if isinstance(exc, WireError) else wire_error(exc)  # type: ignore[arg-type]
    return err.status, err.body(env)


__all__ = ["AutumnError", "Denied", "decide", "error_body", "no_customer"]
