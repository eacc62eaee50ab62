"""Reading a JSON request body field by field, with one clear 400 for anything off.

Each route reads the fields it serves through a ``Body``; a field the route knows of but the
embedded engine cannot honour is refused by name (never silently dropped: a dropped
``customize`` would bill the wrong price), while fields that only shape Autumn's dashboard or
its edge cache are read and ignored. Numbers arrive as ``Decimal`` (``json.loads`` with
``parse_float=Decimal``) and are bounded, so a huge or non-finite number is a 400.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from autumn_wire.errors import invalid_inputs

#: The largest magnitude a quantity or amount may have on the wire.
MAX_NUMBER = Decimal(10) ** 15
#: Epoch milliseconds accepted for times: 1970 .. 9999-12-31.
MAX_MS = 253402300799999


def parse_json(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is ``{}``)."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:  # also a too-long integer literal
        raise invalid_inputs(f"request body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict):
        raise invalid_inputs(f"request body must be a JSON object, got {type(data).__name__}")
    return data


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Body:
    """One request body; ``done()`` refuses the fields that were not read and are set."""

    def __init__(
        self, data: Mapping[str, Any], *, ignored: Iterable[str] = (), prefix: str = ""
    ) -> None:
        self._data = data
        self._read: set[str] = set(ignored)
        self._p = prefix

    @property
    def data(self) -> Mapping[str, Any]:
        return self._data

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str) -> Any:
        self._read.add(key)
        return self._data.get(key)

    def _get(self, key: str, required: bool) -> Any:
        self._read.add(key)
        if key not in self._data:
            if required:
                raise invalid_inputs(f"{self._p}{key}: required")
            return None
        return self._data[key]

    def str_(
        self, key: str, *, required: bool = False, nullable: bool = True, max_len: int = 2048
    ) -> str | None:
        value = self._get(key, required)
        if value is None:
            if required and not nullable:
                raise invalid_inputs(f"{self._p}{key}: expected a string, got null")
            return None
        if not isinstance(value, str):
            raise invalid_inputs(f"{self._p}{key}: expected a string, got {_show(value)}")
        if len(value) > max_len:
            raise invalid_inputs(f"{self._p}{key}: longer than {max_len} characters")
        return value

    def req_str(self, key: str) -> str:
        value = self.str_(key, required=True, nullable=False)
        assert value is not None
        return value

    def bool_(self, key: str, default: bool = False) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise invalid_inputs(f"{self._p}{key}: expected true or false, got {_show(value)}")
        return value

    def num(self, key: str, *, required: bool = False) -> Decimal | None:
        value = self._get(key, required)
        if value is None:
            if required:
                raise invalid_inputs(f"{self._p}{key}: expected a number, got null")
            return None
        return number(self._p + key, value)

    def int_(self, key: str, *, low: int, high: int) -> int | None:
        value = self.num(key)
        if value is None:
            return None
        if value != value.to_integral_value() or not low <= value <= high:
            raise invalid_inputs(
                f"{self._p}{key}: expected an integer in {low}..{high}, got {value}"
            )
        return int(value)

    def ms(self, key: str) -> datetime | None:
        value = self.num(key)
        return None if value is None else from_ms(self._p + key, value)

    def enum(self, key: str, allowed: tuple[str, ...]) -> str | None:
        value = self.str_(key)
        if value is not None and value not in allowed:
            raise invalid_inputs(
                f"{self._p}{key}: expected one of {', '.join(allowed)}, got {_show(value)}"
            )
        return value

    def obj(self, key: str) -> dict[str, Any] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid_inputs(f"{self._p}{key}: expected an object, got {_show(value)}")
        return value

    def list_(self, key: str) -> list[Any] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list):
            raise invalid_inputs(f"{self._p}{key}: expected an array, got {_show(value)}")
        return value

    def str_list(self, key: str) -> list[str]:
        items = self.list_(key) or []
        for item in items:
            if not isinstance(item, str):
                raise invalid_inputs(
                    f"{self._p}{key}: expected an array of strings, got {_show(item)}"
                )
        return items

    def done(self) -> None:
        """Refuse a field this server cannot honour, when it carries a value."""
        for key, value in self._data.items():
            if key in self._read or value is None or value is False or value in ([], {}):
                continue
            raise invalid_inputs(f"{self._p}{key}: not supported by the embedded Autumn engine")


def number(key: str, value: Any) -> Decimal:
    """A finite JSON number within ±MAX_NUMBER (``bool`` and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise invalid_inputs(f"{key}: expected a number, got {_show(value)}")
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise invalid_inputs(f"{key}: expected a number, got {_show(value)}") from None
    if not d.is_finite() or abs(d) > MAX_NUMBER:
        raise invalid_inputs(f"{key}: {_show(value)} is out of range (at most 1e15 in size)")
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -12:
        raise invalid_inputs(f"{key}: {_show(value)} has more than 12 decimal places")
    return d


def from_ms(key: str, value: Decimal) -> datetime:
    if value != value.to_integral_value() or not 0 <= value <= MAX_MS:
        raise invalid_inputs(f"{key}: expected epoch milliseconds, got {value}")
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def sub(key: str, value: Any) -> Body:
    """A nested object read as its own ``Body`` (its field names prefixed in messages)."""
    if not isinstance(value, dict):
        raise invalid_inputs(f"{key}: expected an object, got {_show(value)}")
    return Body(value, prefix=f"{key}.")
