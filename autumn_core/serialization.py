"""``to_dict`` / ``from_dict``: JSON-ready data for every public result, through one cattrs converter.

Decimals become strings (exact), datetimes ISO 8601 strings (aware UTC). Adapters keep their own
converters for their storage formats; this one is the public, documented shape.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import cattrs

T = TypeVar("T")


def make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_unstructure_hook(Decimal, lambda d: "inf" if d.is_infinite() else str(d))
    conv.register_structure_hook(
        Decimal, lambda v, _: Decimal("Infinity") if v == "inf" else Decimal(str(v))
    )
    conv.register_unstructure_hook(datetime, lambda d: d.isoformat())
    conv.register_structure_hook(
        datetime, lambda v, _: v if isinstance(v, datetime) else datetime.fromisoformat(v)
    )
    return conv


converter = make_converter()


def to_dict(obj: Any) -> Any:
    """Turn any result (or list/dict of results) into JSON-ready data."""
    return converter.unstructure(obj)


def from_dict(cls: type[T], data: Any) -> T:
    """Rebuild a result of type ``cls`` from ``to_dict`` output."""
    return converter.structure(data, cls)
