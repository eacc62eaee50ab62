"""What a save changes: the core hands a store the difference, the store only writes it.

``CustomerChange.between(before, after)`` compares two states of one customer: the head (every
field but the children and the version), the identity a uniqueness rule reads (id, email), the
due time ``process_due`` indexes, and each child tuple of the aggregate (products by
``instance_id``, balance rows and entities by ``id``), record by record. Unchanged records are
recognised by identity first, then by equality, so a ``track`` (one balance row copied) costs one
comparison per row.

A store applies the change when it holds the customer at ``base_version``; otherwise (a stale
``before``) it writes ``state`` whole. Either way the stored version becomes larger.
"""

from __future__ import annotations

import operator
from datetime import datetime
from typing import Any, Final

import attrs

from autumn_core.model import CustomerState

#: The child tuples of the aggregate and the attribute that keys each record.
CHILD_KEYS: Final = (("products", "instance_id"), ("rows", "id"), ("entities", "id"))
#: The head of the aggregate: every field but the children and the version. Derived from the
#: class, so a field added to the model is stored without touching any store.
HEAD_FIELDS: Final = tuple(
    f.name
    for f in attrs.fields(CustomerState)
    if f.name not in {name for name, _ in CHILD_KEYS} | {"version"}
)


@attrs.frozen
class ChildChange:
    """How one child tuple changed, in the positions of the new tuple."""

    #: "products", "rows" or "entities".
    attr: str
    #: (position, record) of each new record.
    added: tuple[tuple[int, Any], ...] = ()
    #: (position, record) of each record whose content changed (its position may have too).
    changed: tuple[tuple[int, Any], ...] = ()
    #: (position, record) of each unchanged record that moved to another position.
    moved: tuple[tuple[int, Any], ...] = ()
    #: Keys of the records that are gone.
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.moved or self.removed)


@attrs.frozen
class CustomerChange:
    """A save: the new ``state`` and what changed since the state at ``base_version``."""

    #: The state to store (its ``version`` is ignored: the store owns versions).
    state: CustomerState
    #: The version of the state the change was taken from, as loaded in this transaction.
    base_version: int
    #: Whether any head field changed (the head document must be rewritten).
    head_changed: bool
    #: Whether the id or the lower-cased email changed (a uniqueness rule may refuse it).
    identity_changed: bool
    #: When lazy work on ``state`` is next due (decided by the core), and whether it moved.
    due_at: datetime | None
    due_changed: bool
    #: One per entry of ``CHILD_KEYS``, in that order.
    children: tuple[ChildChange, ...]

    @property
    def pk(self) -> str:
        return self.state.pk

    @classmethod
    def between(cls, before: CustomerState, after: CustomerState) -> CustomerChange:
        """The change turning ``before`` (loaded at ``before.version``) into ``after``."""
        return cls.since(before, after, before.version)

    @classmethod
    def since(
        cls, before: CustomerState, after: CustomerState, base_version: int
    ) -> CustomerChange:
        """The change turning ``before`` into ``after``, ``before`` being stored at
        ``base_version`` (a unit that saved the customer already knows the newer version)."""
        # Tuples compare element by element, identity first: an untouched head costs no __eq__.
        head = before is not after and _head(before) != _head(after)
        due = after.due_at
        return cls(
            state=after,
            base_version=base_version,
            head_changed=head,
            identity_changed=head and identity(before) != identity(after),
            due_at=due,
            due_changed=due != before.due_at,
            children=(
                _child_change("products", "instance_id", before.products, after.products),
                _child_change("rows", "id", before.rows, after.rows),
                _child_change("entities", "id", before.entities, after.entities),
            ),
        )


def identity(state: CustomerState) -> tuple[str | None, str | None]:
    """What the uniqueness rules read of a customer: its id and its lower-cased email."""
    return state.id, None if state.email is None else email_key(state.email)


def email_key(email: str) -> str:
    """The form emails are compared in (case-insensitively, C6): ``str.lower``."""
    return email.lower()


def customer_order(state: CustomerState) -> tuple[datetime, bool, str, str]:
    """The order customers are listed in (docs/rules.md C11): created_at, then id with id-less
    customers last, ids by code point, then pk (which orders only id-less customers)."""
    return (state.created_at, state.id is None, state.id or "", state.pk)


_head: Final = operator.attrgetter(*HEAD_FIELDS)
#: The change of an untouched child tuple, one per child tuple.
_UNCHANGED: Final = {attr: ChildChange(attr) for attr, _ in CHILD_KEYS}


def _child_change(
    attr: str, key: str, before: tuple[Any, ...], after: tuple[Any, ...]
) -> ChildChange:
    if before is after:
        return _UNCHANGED[attr]
    old = {getattr(item, key): (pos, item) for pos, item in enumerate(before)}
    added: list[tuple[int, Any]] = []
    changed: list[tuple[int, Any]] = []
    moved: list[tuple[int, Any]] = []
    for pos, item in enumerate(after):
        prev = old.pop(getattr(item, key), None)
        if prev is None:
            added.append((pos, item))
        elif prev[1] is not item and prev[1] != item:
            changed.append((pos, item))
        elif prev[0] != pos:
            moved.append((pos, item))
    return ChildChange(attr, tuple(added), tuple(changed), tuple(moved), tuple(old))


__all__ = [
    "CHILD_KEYS",
    "HEAD_FIELDS",
    "ChildChange",
    "CustomerChange",
    "customer_order",
    "email_key",
    "identity",
]
