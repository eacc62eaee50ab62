"""Input normalisation shared by every public call: numbers, ids, text, JSON values, instants.

Everything a caller hands in is checked and copied here, in the core, before any store sees
it, so every store accepts and refuses the same values (and no caller keeps a reference into
the engine's state).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    getcontext,
    setcontext,
)
from typing import Any

from autumn_core.errors import InvalidRequest

#: Quantities beyond this magnitude are refused: they are always a bug upstream, and keeping
#: them out bounds every Decimal computation the engine does.
MAX_MAGNITUDE = Decimal(10) ** 15
_INT_MAGNITUDE = 10**15
_SMALL_COUNT = 1024
_SMALL = tuple(Decimal(i) for i in range(_SMALL_COUNT))
#: Decimal places a quantity may have. With MAX_MAGNITUDE every accepted value has at most 28
#: significant digits, so events and rows hold it exactly.
MAX_PLACES = 12
#: Significant digits of every computation the engine makes. Sums of accepted values (a
#: balance of many large tracks and grants, a usage total, an invoice) grow past 10^15 and
#: Decimal's default 28 digits would round them from about 10^16 on; 60 digits keep every sum
#: below 10^47 exact, which no sequence of calls of 10^15 each can reach. Only true quotients
#: (a credit cost's conversion, a proration) are rounded, at the 60th digit, the same way on
#: every store, whatever context the calling thread has set.
PRECISION = 60
_ARITHMETIC = Context(
    prec=PRECISION, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
#: The latest instant the clock may read: every period, trial and reset the engine plans from
#: "now" must still be a date Python (and every store) can represent.
MAX_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)
#: Nesting allowed in metadata and event properties (dicts and lists within each other).
MAX_DEPTH = 32
#: Digits of an integer in metadata or properties (JSON readers lose larger ones).
MAX_INT_DIGITS = 300
_INT_LIMIT = 10**MAX_INT_DIGITS

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
# Whitespace (as str.isspace sees it) and C0/C1 control characters.
_BAD_ID_CHAR = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


#: One copy of the engine's context per thread: entering it is a ``setcontext`` (a third of
#: what ``localcontext``'s copy costs on every deduction), and no two threads share its flags.
_per_thread = threading.local()


def engine_context() -> Context:
    """This thread's copy of the engine's Decimal context (to ``setcontext`` it)."""
    mine: Context | None = getattr(_per_thread, "context", None)
    if mine is None:
        mine = _per_thread.context = _ARITHMETIC.copy()
    return mine


class _Arithmetic:
    __slots__ = ("_caller",)

    def __enter__(self) -> Context:
        self._caller = getcontext()
        mine = engine_context()
        setcontext(mine)
        return mine

    def __exit__(self, *exc: object) -> None:
        setcontext(self._caller)


class _Engaged:
    """The engine's context is already the current one (a rule run inside a transaction)."""

    __slots__ = ()

    def __enter__(self) -> Context:
        return getcontext()

    def __exit__(self, *exc: object) -> None:
        return None


_ENGAGED = _Engaged()


def in_engine() -> bool:
    """Whether this thread computes in the engine's context now (a rule called by a use case,
    inside its transaction): a rule on the hot path then enters nothing."""
    return getcontext() is getattr(_per_thread, "context", None)


def arithmetic() -> AbstractContextManager[Context]:
    """The engine's Decimal context (``PRECISION`` digits), for the duration of a ``with``.

    Inside it (a rule called by a use case, which runs in it) entering again sets nothing."""
    return _ENGAGED if in_engine() else _Arithmetic()


def to_decimal(value: Any, what: str = "value") -> Decimal:
    """Accept int, Decimal, numeric str and finite float (through str); refuse the rest."""
    if type(value) is int and -_INT_MAGNITUDE <= value <= _INT_MAGNITUDE:
        if 0 <= value < _SMALL_COUNT:
            return _SMALL[value]  # a Decimal is immutable: one shared object per small count
        return Decimal(value)  # the common case, already in its one spelling
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
    # copy_abs and comparisons never round, so a huge exponent cannot overflow here.
    if result.copy_abs() > MAX_MAGNITUDE:
        raise InvalidRequest(f"{what} is beyond 10^15: {value!r}")
    return _canonical(result, value, what)


def _canonical(result: Decimal, raw: Any, what: str) -> Decimal:
    """One spelling per value (``50`` for 50.0 and "5E+1", ``0.5`` for "0.50"), so equal values
    print the same in every store and process; more than MAX_PLACES decimal places refused."""
    sign, digits, exponent = result.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return Decimal(0)  # also -0
    end = len(digits)
    while exponent < 0 and digits[end - 1] == 0:
        end -= 1
        exponent += 1
    if exponent < -MAX_PLACES:
        raise InvalidRequest(
            f"{what} has more than {MAX_PLACES} decimal places (the precision kept): {raw!r}"
        )
    if exponent >= 0:
        return Decimal(int(result))  # exact: at most 16 digits
    return Decimal((sign, digits[:end], exponent))


def check_id(value: Any, what: str = "customer id") -> str:
    """Ids: 1-255 characters, no whitespace, no control characters (C2)."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a string, got {value!r}")
    if value.isascii() and value.isprintable() and " " not in value and 0 < len(value) < 256:
        return value  # the common case: printable ASCII is exactly 0x20-0x7e, less the space
    if not value or len(value) > 255:
        raise InvalidRequest(f"{what} must be 1-255 characters, got {value!r}")
    if _BAD_ID_CHAR.search(value) is not None:
        raise InvalidRequest(f"{what} must not contain whitespace or control characters: {value!r}")
    return check_text(value, what)


def check_text(value: str, what: str) -> str:
    """Text every store can keep: no NUL character, no lone surrogate (not valid UTF-8)."""
    if value.isascii():
        if "\x00" in value:
            raise InvalidRequest(f"{what} must not contain NUL characters: {value!r}")
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{what} is not valid Unicode (a lone surrogate): {value!r}") from None
    if "\x00" in value:
        raise InvalidRequest(f"{what} must not contain NUL characters: {value!r}")
    return value


def check_key(value: Any, what: str) -> str | None:
    """An optional non-empty string such as an idempotency key."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{what} must be a non-empty string, got {value!r}")
    return check_text(value, what)


def check_email(value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value):
        raise InvalidRequest(f"email is malformed: {value!r}")
    return check_text(value, "email")


def check_optional_str(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return check_text(value, what)
    raise InvalidRequest(f"{what} must be a string, got {value!r}")


def check_aware(value: Any, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidRequest(f"{what} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRequest(f"{what} must be timezone-aware (UTC), got naive {value!r}")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidRequest(f"{what} is outside the years 1-9999 in UTC: {value!r}") from None


def check_now(value: Any) -> datetime:
    """What the clock reads: aware, and early enough for every date planned from it."""
    if type(value) is datetime and value.tzinfo is UTC and value < MAX_INSTANT:
        return value  # what the library's clocks read: already checked
    now = check_aware(value, "the clock")
    if now >= MAX_INSTANT:
        raise InvalidRequest(f"the clock reads {value!r}, at or after {MAX_INSTANT.isoformat()}")
    return now


def check_metadata(value: Any, what: str = "metadata") -> dict[str, Any]:
    """A JSON object the caller no longer shares with the engine (a checked deep copy)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{what} must be a dict with string keys, got {value!r}")
    out = json_value(value, what, 0)
    assert isinstance(out, dict)
    return out


def json_value(value: Any, what: str, depth: int) -> Any:
    """A copy of ``value`` made of JSON's own types (dict, list, str, int, finite float, bool,
    None); anything JSON cannot represent is refused, naming where it is."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return check_text(value, what)
    if isinstance(value, int):
        if abs(value) >= _INT_LIMIT:
            raise InvalidRequest(f"{what} is an integer of more than {MAX_INT_DIGITS} digits")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequest(f"{what} is {value!r}, which JSON cannot represent")
        return float(value)
    if depth >= MAX_DEPTH:
        root = what.partition("[")[0]
        raise InvalidRequest(f"{root} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidRequest(f"{what} has a key that is not a string: {k!r}")
            check_text(k, f"a key of {what}")
            out[k] = json_value(v, f"{what}[{k!r}]", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [json_value(v, f"{what}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise InvalidRequest(
        f"{what} is {value!r:.80} (a {type(value).__name__}), which JSON cannot represent"
    )


def json_copy(value: Any) -> Any:
    """A deep copy of an already checked JSON value (what a result hands back to the caller)."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_copy(v) for v in value]
    return value


class CheckedClock:
    """The engine's view of the caller's clock: every reading checked by ``check_now``."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock

    def now(self) -> datetime:
        return check_now(self.clock.now())
