"""The customer's documents on disk: JSON deflated against a preset dictionary.

A customer's head and child documents are short (100-400 bytes) and most of their bytes are
the same field names, statuses and instants in every customer: compressed one by one they
barely shrink, but deflated against a dictionary holding those strings they take a quarter of
their JSON (a balance row: ~360 bytes of JSON, ~100 packed). ``pack`` writes a BLOB: one byte
naming the dictionary, then the raw deflate stream. ``unpack`` reads that, and also the plain
JSON text an older schema (or a hand edit) left, so no migration rewrites old rows.

A released dictionary is never edited: a new one gets the next number and ``unpack`` keeps
every older one. Events (one per track, append-only) stay plain JSON.
"""

from __future__ import annotations

import zlib
from typing import Final

#: Dictionary 1: the field names and common values of heads, products, rows and entities,
#: the most frequent last (deflate finds near matches cheaper).
_DICTIONARY_1: Final = (
    b'"pending_quantities":"current_period_start":"current_period_end":"trial_ends_at":'
    b'"canceled_at":"ends_at":"gateway_refs":{"subscription_id":"sub_"next_cycle_adjustments":'
    b'"one_off":true,"add_on":true,"group":"","free":false,"quantities":{"entity_id":'
    b'"per_entity":true,"unlimited":true,"unlimited_usage":"0","billing":"usage_in_arrear",'
    b'"max_purchase":"allocated":true,"reset_count":"expires_at":"renews_with_product":true,'
    b'"rollover":{"max":"duration":"length":"rollovers":[{"id":"amount":"paid_seats":"0",'
    b'"fingerprint":"metadata":{"gateway_customer_id":"cus_"billing_controls":'
    b'{"overage_allowed":[],"spend_limits":[],"usage_limits":[],"usage_alerts":[],'
    b'"auto_topups":[]},"name":"email":"@example.com","pk":"cus_","id":"user-'
    b'{"instance_id":"cp_","product_id":"pro","version":1,"status":"active","trialing",'
    b'"scheduled","expired","default":true,"started_at":"billing_anchor":"reset_anchor":'
    b'"reset":"month","year","day","week","anchor":"next_reset_at":"2026-01-01T00:00:00+00:00",'
    b'"item_index":0,"cp_id":"cp_","granted":"0","balance":"0","included":"0",'
    b'{"id":"row_","feature_id":"messages","credits","seats","created_at":"2026-'
    b'01-01T00:00:00.000000+00:00"'
)

_DICTIONARIES: Final = {1: _DICTIONARY_1}
_CURRENT: Final = 1
_WBITS: Final = -11  # a raw deflate stream, 2 KiB window: the dictionary and one document
#: Primed once; each ``pack`` copies it (cheaper than setting the dictionary again). Level 1
#: and a small hash: copying the state is most of the cost, and a document gains little more.
_PACKER: Final = zlib.compressobj(
    1, zlib.DEFLATED, _WBITS, 2, zlib.Z_DEFAULT_STRATEGY, _DICTIONARY_1
)


def pack(text: str) -> bytes:
    """The stored form of a document's JSON text."""
    packer = _PACKER.copy()
    return bytes((_CURRENT,)) + packer.compress(text.encode()) + packer.flush()


def unpack(value: str | bytes) -> str:
    """The JSON text of a stored document (packed, or plain text)."""
    if isinstance(value, str):
        return value
    dictionary = _DICTIONARIES.get(value[0]) if value else None
    if dictionary is None:
        raise ValueError(f"a stored document has an unknown packing ({value[:1]!r})")
    unpacker = zlib.decompressobj(_WBITS, dictionary)
    return (unpacker.decompress(value[1:]) + unpacker.flush()).decode()


__all__ = ["pack", "unpack"]
