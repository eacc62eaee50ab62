"""How the ``CustomerState`` aggregate maps to SQL rows, for both SQL stores.

A customer is one row with its head document (every field but the children and the version)
and one row per child record, keyed by (customer pk, child key), with ``pos`` keeping the
order of the aggregate's tuple. ``CustomerChange`` (from the core) says which child rows to
write; ``rows_of`` lists them, ``assemble`` builds the state back from the documents.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Any, Final

import attrs

from autumn_core.changes import CHILD_KEYS, HEAD_FIELDS, ChildChange, CustomerChange, email_key
from autumn_core.model import CustomerState, EntityState, ProductState, RowState
from autumn_sqldoc import codec


@attrs.frozen
class Child:
    """How one tuple of the aggregate maps to its child table."""

    attr: str
    #: The table's name without a store's prefix.
    table: str
    #: The record attribute that keys it (the column is ``id`` in PostgreSQL).
    key: str
    cls: type[Any]
    #: A one-letter name for the statement parameters of this table.
    prefix: str
    #: Extra columns filled from the record (name, SQL type), for SQL that must see them.
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def extra_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.extra)


CHILDREN: Final = (
    Child(
        "products",
        "customer_products",
        "instance_id",
        ProductState,
        "p",
        (("product_id", "text"), ("version", "int")),
    ),
    Child("rows", "balance_rows", "id", RowState, "r"),
    Child("entities", "entities", "id", EntityState, "e"),
)
assert tuple((c.attr, c.key) for c in CHILDREN) == CHILD_KEYS, "the core's children, in order"

#: The fields of the head document (the core decides which fields are the head).
HEAD: Final = HEAD_FIELDS
_NOT_HEAD: Final = (*(c.attr for c in CHILDREN), "version")


def head_data(state: CustomerState) -> dict[str, Any]:
    """The head document as JSON-ready data: every field but the children and the version,
    without the fields that hold their default (``codec.compact``)."""
    data = codec.compact(attrs.evolve(state, products=(), rows=(), entities=()))
    for name in _NOT_HEAD:
        data.pop(name, None)
    return data


#: The head fields other than the control state, read at once.
_HEAD_BUT_CONTROLS: Final = operator.attrgetter(*(n for n in HEAD if n != "control_state"))


def controls_alone_changed(change: CustomerChange) -> bool:
    """Whether the head of ``change`` moved in its control state alone (a lock opened or
    settled, a usage window counted): a store may then write the control state by itself."""
    before, after = change.before, change.state
    return (
        change.head_changed
        and before.control_state is not after.control_state
        and _HEAD_BUT_CONTROLS(before) == _HEAD_BUT_CONTROLS(after)
    )


def controls_text(state: CustomerState) -> str:
    """The customer's control state as JSON text, without the fields at their default
    (``codec.controls_text``)."""
    return codec.controls_text(state.control_state)


def head_text(state: CustomerState) -> str:
    """The head document as JSON text."""
    return codec.dump(head_data(state))


def email_lower(state: CustomerState) -> str | None:
    """The email column the uniqueness and lookup indexes read (the core's ``email_key``):
    lower-cased in Python, never with SQL ``lower()``, which disagrees outside ASCII under
    some collations."""
    return None if state.email is None else email_key(state.email)


def order_by(created: str, *, alias: str = "", collate: str = "") -> str:
    """The core's customer order (``autumn_core.changes.customer_order``) as SQL: created, then
    id with id-less customers last, ids by code point (``collate`` names a byte-order collation
    where the default is not one), then pk."""
    a = f"{alias}." if alias else ""
    return f"ORDER BY {a}{created}, {a}id IS NULL, {a}id{collate}, {a}pk"


def child_rows(
    spec: Child, items: Sequence[Any]
) -> Iterator[tuple[str, int, tuple[Any, ...], Any]]:
    """(key, pos, extra column values, record) of every record of a tuple (a whole write)."""
    for pos, item in enumerate(items):
        yield getattr(item, spec.key), pos, extras(spec, item), item


def extras(spec: Child, item: Any) -> tuple[Any, ...]:
    return tuple(getattr(item, name) for name, _ in spec.extra)


def changes_of(change: CustomerChange) -> Iterator[tuple[Child, ChildChange]]:
    """Each child table with what changed in it (tables without changes are left out)."""
    for spec, child in zip(CHILDREN, change.children, strict=True):
        if child:
            yield spec, child


#: The fields of a balance row other than its balance, read from a row's ``__dict__`` at once.
_ROW_REST: Final = operator.itemgetter(
    *(f.name for f in attrs.fields(RowState) if f.name != "balance")
)


def balance_alone_moved(old: RowState, new: RowState) -> bool:
    """Whether ``new`` differs from ``old`` in its balance alone (every other field the same
    object, so its stored text is the same: ``Decimal("1.0")`` and ``Decimal("1.00")`` are
    equal, not the same): a track. A store may then write the new balance by itself."""
    return all(map(operator.is_, _ROW_REST(old.__dict__), _ROW_REST(new.__dict__)))


def assemble(
    head: dict[str, Any], children: Sequence[Sequence[Any]], version: int
) -> CustomerState:
    """The state from its head data and its children's records (in ``CHILDREN`` order)."""
    data = dict(head)
    for spec, items in zip(CHILDREN, children, strict=True):
        data[spec.attr] = items
    data["version"] = version
    return codec.structure(data, CustomerState)


__all__ = [
    "CHILDREN",
    "HEAD",
    "Child",
    "assemble",
    "balance_alone_moved",
    "changes_of",
    "child_rows",
    "controls_alone_changed",
    "controls_text",
    "email_lower",
    "extras",
    "head_data",
    "head_text",
    "order_by",
]
