"""The cattrs converter of the SQL stores, and the JSON text they read and write.

Both SQL stores keep records as JSON documents (SQLite as text, PostgreSQL as ``jsonb``)
produced by ``CONVERTER.unstructure``. The converter is the only place that knows how values
look inside a document:

- ``Decimal`` as its exact ``str`` (``"23.47"``, ``"1E+15"``), never a float, so money and
  quantities survive to the last digit;
- ``datetime`` as ISO 8601 in UTC (``"2025-01-01T00:00:00+00:00"``); a naive datetime is refused,
  because the engine's times are always aware and guessing a zone would corrupt them;
- everything else (attrs classes, tuples, mappings, ``X | None``) as cattrs does by default, so a
  field added to a model class later is stored and loaded without touching this module.

Indexed columns of SQLite (creation time, due time, event timestamp) hold integer microseconds
since the Unix epoch instead (``to_micros``): integers sort and compare in SQL exactly like the
instants they encode. PostgreSQL's columns are ``numeric`` and ``timestamptz``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import cattrs

from autumn_core.errors import StoreError
from autumn_core.model import EventRecord

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


#: Recently written UTC instants and their text. A customer's rows carry the same few instants
#: (created, anchor, next reset) through every save; hashing one is cheaper than formatting it.
_ISO: dict[datetime, str] = {}


def _unstructure_datetime(value: datetime) -> str:
    if value.tzinfo is UTC:  # the engine's own times: no conversion needed
        text = _ISO.get(value)
        if text is None:
            if len(_ISO) >= 4096:
                _ISO.clear()
            text = _ISO[value] = value.isoformat()
        return text
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"refusing to store a naive datetime: {value!r}")
    return value.astimezone(UTC).isoformat()


def _structure_datetime(value: Any, _: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        # Never written by this codec; tolerate hand-edited rows by reading them as UTC.
        return parsed.replace(tzinfo=UTC)
    return parsed


def _structure_decimal(value: Any, _: Any) -> Decimal:
    if isinstance(value, float):
        # Never written by this codec: a float here means the row was edited by hand.
        return Decimal(str(value))
    return Decimal(value)


def make_converter() -> cattrs.Converter:
    """Build a converter: Decimals as exact strings, datetimes as ISO 8601 UTC."""
    converter = cattrs.Converter()
    converter.register_unstructure_hook(Decimal, str)
    converter.register_structure_hook(Decimal, _structure_decimal)
    converter.register_unstructure_hook(datetime, _unstructure_datetime)
    converter.register_structure_hook(datetime, _structure_datetime)
    return converter


CONVERTER = make_converter()

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_loads = json.loads


def encode(obj: Any) -> str:
    """Serialise an attrs record (or a plain structure) to compact JSON text."""
    return _dumps(CONVERTER.unstructure(obj))


# -- the hot path's encoders --------------------------------------------------------------------
_NO_DEFAULT = object()
#: Per record class: field name -> its default object (``_NO_DEFAULT`` when it has none).
_DEFAULTS: dict[type, dict[str, Any]] = {}


def _defaults(cls: type) -> dict[str, Any]:
    defaults = {
        f.name: _NO_DEFAULT
        if f.default is attrs.NOTHING or isinstance(f.default, attrs.Factory)  # type: ignore[arg-type]
        else f.default
        for f in attrs.fields(cls)
    }
    _DEFAULTS[cls] = defaults
    return defaults


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _unstructure_datetime(value)
    return CONVERTER.unstructure(value)


_dumps_values = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
).encode


def encode_record(obj: Any) -> str:
    """``encode(obj)`` for the records saved on every track (balance rows), without the
    fields that still hold their default object.

    A balance row has some thirty fields and most keep their defaults: leaving them out
    halves the JSON to write and to parse again, and ``decode`` restores them. Only the default
    object itself is left out (``is``, not ``==``), so ``Decimal("0.00")`` is written and keeps
    its exponent. The JSON encoder walks the record's own ``__dict__`` and calls back only for
    Decimals, datetimes and nested records. Records without a ``__dict__`` (slotted) take
    ``encode``. ``tests/stores/test_sqlite_store.py`` pins the result to ``encode``.
    """
    values = getattr(obj, "__dict__", None)
    if values is None:
        return encode(obj)
    cls = type(obj)
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _defaults(cls)
    # A derived value cached in ``__dict__`` is no field: ``get`` answers the value itself,
    # so it is left out like a default.
    return _dumps_values({k: v for k, v in values.items() if v is not defaults.get(k, v)})


def encode_event(event: EventRecord) -> str:
    """``encode(event)``, written out: events are the one record stored on every track.

    ``tests/stores/test_sqlite_codec.py`` pins it to ``encode`` over generated events, so a field
    added to ``EventRecord`` fails that test until it is added here.
    """
    properties = event.properties
    return _dumps(
        {
            "id": event.id,
            "customer_pk": event.customer_pk,
            "entity_id": event.entity_id,
            "feature_id": event.feature_id,
            "event_name": event.event_name,
            "value": str(event.value),
            "properties": CONVERTER.unstructure(properties) if properties else {},
            "timestamp": _unstructure_datetime(event.timestamp),
            "created_at": _unstructure_datetime(event.created_at),
        }
    )


def unstructure(obj: Any) -> Any:
    """The JSON-ready form of ``obj`` (for callers that edit it before ``dump``)."""
    return CONVERTER.unstructure(obj)


def dump(data: Any) -> str:
    """JSON text of already unstructured data."""
    return _dumps(data)


def load(text: str) -> Any:
    """Parse JSON text written by ``dump`` / ``encode``."""
    return _loads(text)


def structure(data: Any, cls: type[T]) -> T:
    """Build ``cls`` from unstructured data."""
    return CONVERTER.structure(data, cls)


def decode(text: str, cls: type[T]) -> T:
    """Parse JSON text written by ``encode`` back into ``cls``."""
    return CONVERTER.structure(_loads(text), cls)


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch: a sortable, exact integer for indexed time columns."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"refusing to store a naive datetime: {value!r}")
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The aware UTC datetime that ``to_micros`` encoded."""
    return _EPOCH + timedelta(microseconds=value)


__all__ = [
    "CONVERTER",
    "decode",
    "dump",
    "encode",
    "from_micros",
    "load",
    "make_converter",
    "structure",
    "to_micros",
    "unstructure",
]
