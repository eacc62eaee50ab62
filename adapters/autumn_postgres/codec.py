"""The one cattrs converter of the PostgreSQL adapter, and the JSON it writes into ``jsonb``.

Records (customer heads, balance rows, products, entities, events, invoices, ...) are stored as
``jsonb`` documents produced by ``CONVERTER.unstructure``. The converter is the only place that
knows how values look inside those documents:

- ``Decimal`` as its exact ``str`` (``"23.47"``, ``"1E+15"``, ``"Infinity"``), never a JSON
  number: ``jsonb`` would keep the digits, but every JSON reader on the way back (psycopg's
  ``json.loads``) would turn them into a float;
- ``datetime`` as ISO 8601 in UTC; a naive datetime is refused, because the engine's times are
  always aware and guessing a zone would corrupt them;
- everything else (attrs classes, tuples, mappings, ``X | None``) as cattrs does by default, so a
  field added to a model class later is stored and loaded without touching this module.

Scalar columns that SQL must see (``numeric`` money and quantities, ``timestamptz`` times) are
written from the record's attributes by the store, next to the document; reads build records from
the document so that the two can never disagree about a field the columns do not cover.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import cattrs

from autumn_core.errors import StoreError

T = TypeVar("T")


def _unstructure_datetime(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"refusing to store a naive datetime: {value!r}")
    return value.astimezone(UTC).isoformat()


def _structure_datetime(value: Any, _: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        # Never written by this codec; tolerate hand-edited documents by reading them as UTC.
        return parsed.replace(tzinfo=UTC)
    return parsed


def _structure_decimal(value: Any, _: Any) -> Decimal:
    if isinstance(value, float):
        # Never written by this codec: a float here means the document was edited by hand.
        return Decimal(str(value))
    return Decimal(value)


def make_converter() -> cattrs.Converter:
    """Build the adapter's converter: Decimals as exact strings, datetimes as ISO 8601 UTC."""
    converter = cattrs.Converter()
    converter.register_unstructure_hook(Decimal, str)
    converter.register_structure_hook(Decimal, _structure_decimal)
    converter.register_unstructure_hook(datetime, _unstructure_datetime)
    converter.register_structure_hook(datetime, _structure_datetime)
    return converter


CONVERTER = make_converter()

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def unstructure(obj: Any) -> Any:
    """The JSON-ready form of ``obj``."""
    return CONVERTER.unstructure(obj)


def dump(data: Any) -> str:
    """JSON text of already unstructured data (sent as text and cast to ``jsonb`` in SQL)."""
    return _dumps(data)


def encode(obj: Any) -> str:
    """Serialise an attrs record to compact JSON text."""
    return _dumps(CONVERTER.unstructure(obj))


def structure(data: Any, cls: type[T]) -> T:
    """Build ``cls`` from a parsed ``jsonb`` document."""
    return CONVERTER.structure(data, cls)


__all__ = ["CONVERTER", "dump", "encode", "make_converter", "structure", "unstructure"]
