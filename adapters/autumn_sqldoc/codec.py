"""The cattrs converter of the SQL stores, and the JSON text they read and write.

Both SQL stores keep records as JSON documents (SQLite as text, PostgreSQL as ``jsonb``)
produced by ``CONVERTER.unstructure``. The converter is the only place that knows how values
look inside a document:

- ``Decimal`` as its exact ``str`` (``"23.47"``, ``"1E+15"``), never a float, so money and
  quantities survive to the last digit;
- ``datetime`` as ISO 8601 in UTC (``"2025-01-01T00:00:00Z"``; older documents say
  ``+00:00``, read alike); a naive datetime is refused,
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
from typing import Any, Final, TypeVar

import attrs
import cattrs

from autumn_core.control_state import ControlState, LockState
from autumn_core.errors import StoreError
from autumn_core.model import EventRecord, PendingRecord

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
            text = _ISO[value] = _iso_z(value)
        return text
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"refusing to store a naive datetime: {value!r}")
    return _iso_z(value.astimezone(UTC))


def _iso_z(value: datetime) -> str:
    """ISO 8601 of a UTC instant, its offset written ``Z`` (``fromisoformat`` and PostgreSQL's
    ``timestamptz`` read both; five bytes fewer per instant in every document)."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


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


#: Per slotted record class: field name -> the unstructured form of its default.
_PLAIN_DEFAULTS: dict[type, dict[str, Any]] = {}


def _plain_defaults(cls: type) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for f in attrs.fields(cls):
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            if default.takes_self:
                continue
            default = default.factory()
        elif default is attrs.NOTHING:
            continue
        defaults[f.name] = CONVERTER.unstructure(default)
    _PLAIN_DEFAULTS[cls] = defaults
    return defaults


def compact(obj: Any) -> dict[str, Any]:
    """``unstructure(obj)`` without the fields whose unstructured value equals their default's
    (``structure`` restores them). Compared in unstructured form, so ``Decimal("0.00")``
    (``"0.00"``) is kept beside a default of ``Decimal(0)`` (``"0"``)."""
    data: dict[str, Any] = CONVERTER.unstructure(obj)
    cls = type(obj)
    defaults = _PLAIN_DEFAULTS.get(cls)
    if defaults is None:
        defaults = _plain_defaults(cls)
    for name, default in defaults.items():
        if name in data and data[name] == default and type(data[name]) is type(default):
            del data[name]
    return data


def encode_record(obj: Any, leave_out: str | None = None) -> str:
    """``encode(obj)`` without the fields that hold their default: the JSON of every child
    record (balance rows, products, entities).

    A balance row has some thirty fields and most keep their defaults: leaving them out
    halves the JSON to write and to parse again, and ``decode`` restores them. For the records
    saved on every track (dict classes: balance rows) only the default object itself is left
    out (``is``, not ``==``), so ``Decimal("0.00")`` is written and keeps its exponent; the
    values are converted here (str, int, bool and None as they are, Decimals and datetimes by
    the converter's rules, anything else through the converter) and the C encoder writes them.
    Slotted records take ``compact``. ``leave_out`` names a field the caller keeps elsewhere
    (a key column) and puts back before decoding. ``tests/stores/test_sqlite_store.py`` pins
    the decoded result to ``encode``.
    """
    values = getattr(obj, "__dict__", None)
    if values is None:
        data = compact(obj)
        if leave_out is not None:
            data.pop(leave_out, None)
        return _dumps(data)
    cls = type(obj)
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _defaults(cls)
    out: dict[str, Any] = {}
    for k, v in values.items():
        # A derived value cached in ``__dict__`` is no field: ``get`` answers the value itself,
        # so it is left out like a default.
        if v is defaults.get(k, v) or k == leave_out:
            continue
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            out[k] = v
        elif t is Decimal:
            out[k] = str(v)
        elif t is datetime:
            out[k] = _unstructure_datetime(v)
        else:
            out[k] = CONVERTER.unstructure(v)
    return _dumps(out)


def encode_event(event: EventRecord, *, keyed: bool = False) -> str:
    """``encode(event)``, written out: events are the one record stored on every track.

    ``keyed``: for a store that keeps the event's id and customer in columns, leave those out,
    and the fields that are empty (``load_event`` puts them all back).
    ``tests/stores/test_sqlite_store.py`` pins the plain form to ``encode``, so a field added
    to ``EventRecord`` fails that test until it is added here.
    """
    properties = event.properties
    if keyed:
        doc: dict[str, Any] = {"value": str(event.value)}
        if event.entity_id is not None:
            doc["entity_id"] = event.entity_id
        if event.feature_id is not None:
            doc["feature_id"] = event.feature_id
        if event.event_name is not None:
            doc["event_name"] = event.event_name
        if properties:
            doc["properties"] = CONVERTER.unstructure(properties)
        doc["timestamp"] = _unstructure_datetime(event.timestamp)
        if event.created_at != event.timestamp:
            doc["created_at"] = _unstructure_datetime(event.created_at)
        return _dumps(doc)
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


def encode_pending(record: PendingRecord) -> str:
    """``encode(record)``, written out: a lock's index record is written by every reservation
    and every finalize. ``tests/stores/test_sqlite_store.py`` pins it to ``encode``."""
    payload = record.payload
    if not all(type(v) in _PLAIN for v in payload.values()):
        payload = CONVERTER.unstructure(payload)
    return _dumps(
        {
            "key": record.key,
            "customer_pk": record.customer_pk,
            "kind": record.kind,
            "payload": payload,
            "created_at": _unstructure_datetime(record.created_at),
        }
    )


#: Values the converter leaves as they are (a lock's index record holds nothing else).
_PLAIN: Final = frozenset({str, int, bool, type(None)})


def decode_pending(text: str) -> PendingRecord:
    """``decode(text, PendingRecord)``, written out (see ``encode_pending``)."""
    doc = _loads(text)
    payload = doc["payload"]
    if not isinstance(payload, dict):
        raise StoreError(f"a pending record's payload is not an object: {payload!r:.80}")
    return PendingRecord(
        str(doc["key"]),
        str(doc["customer_pk"]),
        str(doc["kind"]),
        payload,
        _structure_datetime(doc["created_at"], datetime),
    )


def controls_doc(cs: ControlState) -> dict[str, Any]:
    """``compact(cs)``, written out: a customer's control state is written by every
    reservation and every finalize. ``tests/stores/test_sqlite_store.py`` pins it to
    ``compact`` (a field added to the control state's records fails there until added here)."""
    doc: dict[str, Any] = {}
    if cs.locks:
        doc["locks"] = [_lock_doc(lk) for lk in cs.locks]
    if cs.windows:
        doc["windows"] = [
            {
                "feature_id": w.feature_id,
                "entity_id": w.entity_id,
                "start": _unstructure_datetime(w.start),
                "end": _unstructure_datetime(w.end),
                "used": str(w.used),
            }
            for w in cs.windows
        ]
    if cs.lock_due is not None:
        doc["lock_due"] = _unstructure_datetime(cs.lock_due)
    return doc


def controls_text(cs: ControlState) -> str:
    """``dump(controls_doc(cs))``, with each open lock's JSON made once per lock: opening or
    settling one lock of a customer that has many open re-encodes none of the others."""
    locks = cs.locks
    if not locks:
        return _dumps(controls_doc(cs))
    rest = _dumps(controls_doc(ControlState((), cs.windows, cs.lock_due)))
    texts = ",".join([_lock_text(lk) for lk in locks])
    if rest == "{}":
        return f'{{"locks":[{texts}]}}'
    return f'{{"locks":[{texts}],{rest[1:]}'


#: Where a ``LockState`` keeps its JSON text once made (in its ``__dict__``: the record is
#: frozen, and every copy of it is built by ``__init__``, so none carries it stale).
_LOCK_TEXT: Final = "_sqldoc_text"


def _lock_text(lk: LockState) -> str:
    memo = lk.__dict__
    text: str | None = memo.get(_LOCK_TEXT)
    if text is None:
        text = memo[_LOCK_TEXT] = _dumps(_lock_doc(lk))
    return text


def _lock_doc(lk: LockState) -> dict[str, Any]:
    return {
        "id": lk.id,
        "feature_id": lk.feature_id,
        "entity_id": lk.entity_id,
        "requested": str(lk.requested),
        "held": str(lk.held),
        "takes": [
            {
                "row_id": t.row_id,
                "feature_id": t.feature_id,
                "amount": str(t.amount),
                "rollovers": [[rid, str(amount)] for rid, amount in t.rollovers],
                "period": None if t.period is None else _unstructure_datetime(t.period),
            }
            for t in lk.takes
        ],
        "created_at": _unstructure_datetime(lk.created_at),
        "expires_at": _unstructure_datetime(lk.expires_at),
        "overage": lk.overage,
        "properties": CONVERTER.unstructure(lk.properties),
        "counted": [
            [fid, entity_id, _unstructure_datetime(start), str(units)]
            for fid, entity_id, start, units in lk.counted
        ],
    }


def load_event(text: str, event_id: str, customer_pk: str) -> EventRecord:
    """The event ``encode_event`` wrote (keyed or not), its id and customer from columns."""
    doc = _loads(text)
    doc.setdefault("id", event_id)
    doc.setdefault("customer_pk", customer_pk)
    for name in ("entity_id", "feature_id", "event_name"):
        doc.setdefault(name, None)
    doc.setdefault("properties", {})
    doc.setdefault("created_at", doc["timestamp"])
    return CONVERTER.structure(doc, EventRecord)


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
    "compact",
    "controls_doc",
    "controls_text",
    "decode",
    "decode_pending",
    "dump",
    "encode",
    "encode_pending",
    "from_micros",
    "load",
    "load_event",
    "make_converter",
    "structure",
    "to_micros",
    "unstructure",
]
