"""Input normalisation shared by every public call: numbers, ids, emails, datetimes."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from autumn_core.errors import InvalidRequest

#: Quantities beyond this magnitude are refused: they are always a bug upstream, and keeping
#: them out bounds every Decimal computation the engine does.
MAX_MAGNITUDE = Decimal(10) ** 15

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
# Whitespace (as str.isspace sees it) and C0/C1 control characters.
_BAD_ID_CHAR = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def to_decimal(value: Any, what: str = "value") -> Decimal:
    """Accept int, Decimal, numeric str and finite float (through str); refuse the rest."""
    if isinstance(value, bool) or value is None:
        raise InvalidRequest(f"{what} must be a number, got {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequest(f"{what} must be finite, got {value!r}")
        result = Decimal(str(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidRequest(f"{what} must be numeric, got {value!r}") from None
    else:
        raise InvalidRequest(f"{what} must be a number, got {value!r}")
    if not result.is_finite():
        raise InvalidRequest(f"{what} must be finite, got {value!r}")
    if abs(result) > MAX_MAGNITUDE:
        raise InvalidRequest(f"{what} is beyond 10^15: {value!r}")
    # Normalise -0 and trailing exponent noise without losing exactness.
    if result == 0:
        return Decimal(0)
    return result


def check_id(value: Any, what: str = "customer id") -> str:
    """Ids: 1-255 characters, no whitespace, no control characters (C2)."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a string, got {value!r}")
    if not value or len(value) > 255:
        raise InvalidRequest(f"{what} must be 1-255 characters, got {value!r}")
    if _BAD_ID_CHAR.search(value) is not None:
        raise InvalidRequest(f"{what} must not contain whitespace or control characters: {value!r}")
    return value


def check_email(value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value):
        raise InvalidRequest(f"email is malformed: {value!r}")
    return value


def check_optional_str(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidRequest(f"{what} must be a string, got {value!r}")


def check_aware(value: Any, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidRequest(f"{what} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRequest(f"{what} must be timezone-aware (UTC), got naive {value!r}")
    return value.astimezone(UTC)


def check_metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InvalidRequest(f"metadata must be a dict with string keys, got {value!r}")
    return dict(value)
