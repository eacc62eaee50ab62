"""What a SQLite save writes: the statements for a customer's head and child rows, built from
the core's ``CustomerChange`` before anything is run (so a refused save writes nothing).
Pure functions of their arguments; ``transaction`` runs them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from autumn_core.changes import CustomerChange
from autumn_core.model import CustomerState, RowState
from autumn_sqldoc.mapping import (
    CHILDREN,
    Child,
    balance_alone_moved,
    controls_alone_changed,
    email_lower,
    extras,
    head_data,
)
from autumn_sqlite import codec
from autumn_sqlite.packing import pack

#: Statements to run, in order: (sql, parameters, executemany?).
Ops = list[tuple[str, Any, bool]]


def _child_sql(spec: Child) -> tuple[str, str, str, str, str]:
    """INSERT, UPDATE data, UPDATE pos, DELETE one, DELETE all — for one child table."""
    extra = spec.extra_names
    cols = ", ".join(("customer_pk", spec.key, "pos", *extra, "data"))
    marks = ", ".join("?" * (4 + len(extra)))
    sets = ", ".join(f"{c} = ?" for c in ("pos", *extra, "data"))
    if spec.attr == "rows":
        sets += ", balance = NULL"  # the document written holds the balance
    where = f"WHERE customer_pk = ? AND {spec.key} = ?"
    return (
        f"INSERT INTO {spec.table} ({cols}) VALUES ({marks})",
        f"UPDATE {spec.table} SET {sets} {where}",
        f"UPDATE {spec.table} SET pos = ? {where}",
        f"DELETE FROM {spec.table} {where}",
        f"DELETE FROM {spec.table} WHERE customer_pk = ?",
    )


_CHILD_SQL: Final = {spec.attr: _child_sql(spec) for spec in CHILDREN}


#: A save that changes only the control state (and balances) writes its column alone.
UPDATE_CONTROLS: Final = (
    "UPDATE customers SET controls = ?, version = version + 1 WHERE seq = ? AND version = ?"
)
#: A save that changes only a row's balance (a track) writes the balance column alone.
UPDATE_BALANCE: Final = "UPDATE balance_rows SET balance = ? WHERE customer_pk = ? AND id = ?"


def balances_only(change: CustomerChange) -> list[tuple[str, str, str]] | None:
    """The balance-column updates of a change that moves row balances alone (a track), or
    them and the control state (a lock taken or settled: ``controls_alone_changed``), else
    None. Same products and entities, same rows in the same places, same due time."""
    before, after = change.before, change.state
    if before.products is not after.products or before.entities is not after.entities:
        return None
    if before.control_state is not after.control_state and not controls_alone_changed(change):
        return None
    old_rows, new_rows = before.rows, after.rows
    if len(old_rows) != len(new_rows):
        return None
    pk = after.pk
    out = []
    for old, new in zip(old_rows, new_rows, strict=True):
        if old is new:
            continue
        if old.id != new.id or not balance_alone_moved(old, new):
            return None
        out.append((str(new.balance), pk, new.id))
    if change.due_changed or (change.head_changed and not controls_alone_changed(change)):
        return None
    return out


#: How each child table's documents are stored, without the key its column holds: balance
#: rows, rewritten by every track, as plain JSON (packing one costs a track more than its bytes
#: are worth); products and entities, written by attach and entity calls, packed (``packing``).
_ENCODE: Final[dict[str, Callable[[Any], str | bytes]]] = {
    "products": lambda record: pack(codec.encode_record(record, "instance_id")),
    "rows": lambda record: codec.encode_record(record, "id"),
    "entities": lambda record: pack(codec.encode_record(record, "id")),
}
#: Head fields the customers row holds in columns (put back on read).
HEAD_COLUMNS: Final = ("pk", "id", "created_at")


def micros(value: datetime | None) -> int | None:
    return None if value is None else codec.to_micros(value)


def head_params(state: CustomerState, due_us: int | None) -> tuple[Any, ...]:
    """(id, email_lower, created_us, next_due_us, data, pk) of the customers row; the
    head document leaves out what the columns hold (pk, id, created_at)."""
    head = head_data(state)
    for name in HEAD_COLUMNS:
        del head[name]
    return (
        state.id,
        email_lower(state),
        codec.to_micros(state.created_at),
        due_us,
        pack(codec.dump(head)),
        state.pk,
    )


def replace_ops(ops: Ops, spec: Child, pk: str, items: Sequence[Any], *, clear: bool) -> None:
    """Statements writing one child table whole (``clear``: delete what it held first)."""
    insert, _update, _pos, _delete_one, delete_all = _CHILD_SQL[spec.attr]
    encode = _ENCODE[spec.attr]
    if clear:
        ops.append((delete_all, (pk,), False))
    rows = [
        (pk, getattr(item, spec.key), pos, *extras(spec, item), encode(item))
        for pos, item in enumerate(items)
    ]
    if rows:
        ops.append((insert, rows, True))


def balance_ops(
    ops: Ops, pk: str, before: Sequence[RowState], changed: Sequence[tuple[int, RowState]]
) -> Sequence[tuple[int, RowState]]:
    """The balance-column updates of the changed rows whose balance alone moved (and not
    their position); returns the other changed rows."""
    rest: list[tuple[int, RowState]] = []
    for pos, row in changed:
        key = row.id
        old = before[pos] if pos < len(before) else None
        if old is not None and old.id == key and balance_alone_moved(old, row):
            ops.append((UPDATE_BALANCE, (str(row.balance), pk, key), False))
        else:
            rest.append((pos, row))
    return rest


def change_ops(
    ops: Ops,
    spec: Child,
    pk: str,
    added: Sequence[tuple[int, Any]],
    changed: Sequence[tuple[int, Any]],
    moved: Sequence[tuple[int, Any]],
    removed: Sequence[str],
) -> None:
    """Statements applying one child table's change; a moved record only gets its position."""
    insert, update, update_pos, delete_one, _delete_all = _CHILD_SQL[spec.attr]
    key, encode = spec.key, _ENCODE[spec.attr]
    for k in removed:
        ops.append((delete_one, (pk, k), False))
    for pos, item in added:
        ops.append(
            (insert, (pk, getattr(item, key), pos, *extras(spec, item), encode(item)), False)
        )
    for pos, item in changed:
        ops.append(
            (update, (pos, *extras(spec, item), encode(item), pk, getattr(item, key)), False)
        )
    for pos, item in moved:
        ops.append((update_pos, (pos, pk, getattr(item, key)), False))
