"""The SQLite store's documents: the SQL stores' one codec (``autumn_sqldoc.codec``)."""

from __future__ import annotations

from autumn_sqldoc.codec import (
    CONVERTER,
    decode,
    decode_pending,
    dump,
    encode,
    encode_event,
    encode_pending,
    encode_record,
    from_micros,
    load,
    load_event,
    make_converter,
    structure,
    to_micros,
    unstructure,
)

__all__ = [
    "CONVERTER",
    "decode",
    "decode_pending",
    "dump",
    "encode",
    "encode_event",
    "encode_pending",
    "encode_record",
    "from_micros",
    "load",
    "load_event",
    "make_converter",
    "structure",
    "to_micros",
    "unstructure",
]
