"""The PostgreSQL store's documents: the SQL stores' one codec (``autumn_sqldoc.codec``).

Records (customer heads, balance rows, products, entities, events, invoices, ...) are stored as
``jsonb`` documents. Decimals are exact strings, never JSON numbers: ``jsonb`` would keep the
digits, but every JSON reader on the way back would turn them into floats. Scalar columns that
SQL must see (``numeric`` money, ``timestamptz`` times) are written from the record's attributes
next to the document; reads build records from the document, so the two never disagree.
"""

from __future__ import annotations

from autumn_sqldoc.codec import (
    CONVERTER,
    decode_pending,
    dump,
    encode,
    encode_pending,
    make_converter,
    structure,
    unstructure,
)

__all__ = [
    "CONVERTER",
    "decode_pending",
    "dump",
    "encode",
    "encode_pending",
    "make_converter",
    "structure",
    "unstructure",
]
