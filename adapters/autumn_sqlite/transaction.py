"""The SQLite transaction: the customer aggregate (reads through the parse cache, saves that
write what the core's ``CustomerChange`` lists) on top of the other records (``records``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Protocol

from autumn_core.changes import CustomerChange, email_key
from autumn_core.errors import StoreError
from autumn_core.model import (
    CustomerState,
    EventRecord,
    PendingRecord,
    replace,
    with_version,
)
from autumn_sqldoc.cache import ParseCache
from autumn_sqldoc.mapping import (
    CHILDREN,
    assemble,
    changes_of,
    controls_alone_changed,
    controls_text,
    order_by,
)
from autumn_sqlite import codec
from autumn_sqlite.batches import Member
from autumn_sqlite.errors import translate
from autumn_sqlite.group import GroupCommit
from autumn_sqlite.outbox import OutboxTable
from autumn_sqlite.packing import unpack
from autumn_sqlite.records import Records
from autumn_sqlite.saves import (
    UPDATE_BALANCE,
    UPDATE_CONTROLS,
    Ops,
    balance_ops,
    balances_only,
    change_ops,
    head_params,
    micros,
    replace_ops,
)

#: Marks a customer deleted in a transaction's overlay.
_DELETED: Final[Any] = object()

#: A parsed customer and the ``seq`` of its row: (seq, version) names one committed state.
Entry = tuple[int, CustomerState]
#: A customer's last event sequence number. A customer's version (``CustomerState.version``)
#: is its row's ``version`` plus this: a save bumps the row's version only when its
#: transaction appends no event for the customer (schema 5: a track writes two pages, its
#: balance row and its event, not the customer row too). Both parts only grow (events go only
#: with their customer), so the sum names one committed state.
_EVENTS_SEQ: Final = (
    "coalesce((SELECT max(e.seq) FROM events AS e WHERE e.customer_pk = customers.pk), 0)"
)
#: The deferred bump of a save whose transaction appended no event for the customer.
_BUMP: Final = "UPDATE customers SET version = version + 1 WHERE seq = ? AND version = ?"


#: The core's customer order; SQLite's BINARY collation on UTF-8 compares by code point.
_CUSTOMER_ORDER: Final = order_by("created_us")

_LOAD_CHILDREN: Final = (
    " UNION ALL ".join(
        f"SELECT {i}, pos, {spec.key}, data, {'balance' if spec.attr == 'rows' else 'NULL'}"
        f" FROM {spec.table} WHERE customer_pk = ?1"
        for i, spec in enumerate(CHILDREN)
    )
    + " ORDER BY 1, 2"
)
_KEYS: Final = tuple(spec.key for spec in CHILDREN)


class StoreSide(Protocol):
    """What a transaction needs of its store: the lock discipline and the parse cache."""

    cache: ParseCache[Entry]
    _group: GroupCommit | None

    def _begin(self, conn: sqlite3.Connection, write: bool) -> None: ...

    def _commit(self, conn: sqlite3.Connection, write: bool) -> None: ...

    def _rollback(self, conn: sqlite3.Connection, write: bool) -> None: ...


class SqliteTransaction(Records, OutboxTable):
    """One unit of work on one connection; also the context manager that begins and ends it."""

    def __init__(self, store: StoreSide, conn: sqlite3.Connection, write: bool) -> None:
        super().__init__(conn, write)
        self._store = store
        #: pk -> the state this transaction wrote (or _DELETED), with its seq; published to the
        #: store's cache after COMMIT, dropped on rollback.
        self._overlay: dict[str, tuple[int, Any]] = {}
        #: pk -> (seq, row version, last event seq) read by a query earlier in this transaction
        #: (same snapshot), so that ``customer_pk`` then ``load_customer`` is one query, not two.
        self._seen: dict[str, tuple[int, int, int]] = {}
        #: pk -> [seq, row version, last event seq] of the customers this transaction wrote.
        self._cols: dict[str, list[int]] = {}
        #: Customers whose version this transaction moved already (a bump or an event).
        self._moved: set[str] = set()
        #: Customers saved without a bump so far: bumped before COMMIT unless an event of
        #: theirs is appended meanwhile.
        self._unbumped: set[str] = set()
        #: This write's place in its batch, when the store groups commits.
        self._member: Member | None = None

    # -- context manager --------------------------------------------------------------------
    def __enter__(self) -> SqliteTransaction:
        group = self._store._group if self._write else None
        if group is not None:
            # A write joins (or opens) this process's batch, on the writer connection.
            self._member = group.enter()
            self._conn = group.connection
        else:
            self._store._begin(self._conn, self._write)
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and (self._unbumped or self._cols):
            try:
                self._finish()
            except BaseException:
                self._end(failed=True)
                raise
        self._end(failed=exc_type is not None)

    def run_joined(
        self, fn: Callable[[Any], Any], member: Member
    ) -> tuple[Any, Callable[[], None]]:
        """Run ``fn`` as one writer of an open batch (``GroupCommit.run``, which undoes it if
        it raises): its result, and what to publish once the batch is committed."""
        self._member = member
        self._active = True
        try:
            result = fn(self)
            if self._unbumped or self._cols:
                self._finish()
        finally:
            self._active = False
            self._member = None
        return result, self._publish

    def _end(self, *, failed: bool) -> None:
        """Commit (and publish what was written) or roll back."""
        self._active = False
        member, self._member = self._member, None
        if member is not None:
            assert self._store._group is not None
            # Returns once the batch committed (raising its error if it did not).
            self._store._group.leave(member, not failed)
            if not failed:
                self._publish()
            return
        if failed:
            self._store._rollback(self._conn, self._write)
        else:
            self._store._commit(self._conn, self._write)
            self._publish()

    def _finish(self) -> None:
        """Before COMMIT: the deferred bumps, and each written state's committed version."""
        for pk in self._unbumped:
            cols = self._cols[pk]
            if self._exec(_BUMP, (cols[0], cols[1])).rowcount != 1:
                raise StoreError(f"cannot save customer {pk!r}: it changed under this write")
            cols[1] += 1
        self._unbumped.clear()
        overlay = self._overlay
        for pk, cols in self._cols.items():
            written = overlay.get(pk)
            if written is not None and written[1] is not _DELETED:
                version = cols[1] + cols[2]
                if written[1].version != version:
                    overlay[pk] = (written[0], with_version(written[1], version))

    def _publish(self) -> None:
        """After COMMIT: the states this transaction wrote are the committed ones."""
        cache = self._store.cache
        for pk, (seq, state) in self._overlay.items():
            if state is _DELETED:
                cache.drop(pk)
            else:
                cache.put(pk, (seq, state))

    # -- customers: reads -------------------------------------------------------------------
    def customer_pk(self, customer_id: str) -> str | None:
        row = self._one(
            f"SELECT pk, seq, version, {_EVENTS_SEQ} FROM customers WHERE id = ?", (customer_id,)
        )
        if row is None:
            return None
        pk: str = row[0]
        self._seen[pk] = (row[1], row[2], row[3])
        return pk

    def load_customer(self, pk: str, *, for_update: bool = False) -> CustomerState | None:
        # ``for_update`` needs nothing more: a write transaction holds the database write lock.
        written = self._overlay.get(pk)
        if written is not None:
            state: CustomerState | None = None if written[1] is _DELETED else written[1]
            return state
        seen = self._seen.get(pk)
        if seen is None:
            seen = self._read_seen(pk)
            if seen is None:
                return None
        return self._cached_or_read(pk, seen[0], seen[1] + seen[2])

    def _read_seen(self, pk: str) -> tuple[int, int, int] | None:
        row = self._one(f"SELECT seq, version, {_EVENTS_SEQ} FROM customers WHERE pk = ?", (pk,))
        if row is None:
            return None
        seen = self._seen[pk] = (row[0], row[1], row[2])
        return seen

    def _cached_or_read(self, pk: str, seq: int, version: int) -> CustomerState | None:
        entry = self._store.cache.get(pk)
        if entry is not None and entry[0] == seq and entry[1].version == version:
            return entry[1]
        return self._read_customer(pk)

    def _read_customer(self, pk: str) -> CustomerState | None:
        """Parse the customer from its rows and remember it (committed data, but in a later
        writer of a group-commit batch: any customer this transaction wrote is served from
        the overlay instead)."""
        row = self._one(
            f"SELECT seq, version, {_EVENTS_SEQ}, data, id, created_us, controls FROM customers"
            " WHERE pk = ?",
            (pk,),
        )
        if row is None:
            return None
        seq, row_version, events_seq, data, customer_id, created_us, controls = row
        version = row_version + events_seq
        children = self._all(_LOAD_CHILDREN, (pk,))
        try:
            lists: tuple[list[Any], ...] = tuple([] for _ in CHILDREN)
            for kind, _pos, key, child, balance in children:
                doc = codec.load(unpack(child))
                doc.setdefault(_KEYS[kind], key)
                if balance is not None:
                    doc["balance"] = balance
                lists[kind].append(doc)
            head = codec.load(unpack(data))
            if "pk" not in head:
                head.update(pk=pk, id=customer_id, created_at=codec.from_micros(created_us))
            if controls is not None:
                head["control_state"] = codec.load(controls)
            state = assemble(head, lists, version)
        except Exception as exc:
            raise translate(exc) from exc
        member = self._member
        if (member is None or member.first) and pk not in self._moved:
            # A later writer of a batch reads the earlier writers' work, and a customer this
            # transaction appended events to has a version not committed yet (the batch may
            # fail): only what is saved is published, after the COMMIT.
            self._store.cache.put(pk, (seq, state))
        self._seen[pk] = (seq, row_version, events_seq)
        return state

    def _states(self, rows: list[Any]) -> list[CustomerState]:
        """Customers from (pk, seq, row version, last event seq) rows, in order, through the
        overlay and cache."""
        out = []
        for pk, seq, version, events_seq in rows:
            self._seen[pk] = (seq, version, events_seq)
            written = self._overlay.get(pk)
            if written is not None:
                state = None if written[1] is _DELETED else written[1]
            else:
                state = self._cached_or_read(pk, seq, version + events_seq)
            if state is not None:
                out.append(state)
        return out

    def get_pending_locking_customer(self, key: str) -> PendingRecord | None:
        """``get_pending``, with the (seq, version) of the record's customer read by the same
        statement: the ``load_customer`` that follows then needs no statement of its own when
        the parse cache holds that version (a write transaction holds the database's write
        lock already)."""
        row = self._one(
            f"SELECT p.data, customers.pk, seq, version, {_EVENTS_SEQ} FROM pending AS p"
            " LEFT JOIN customers ON customers.pk = p.customer_pk WHERE p.key = ?",
            (key,),
        )
        if row is None:
            return None
        pk = row[1]
        if pk is not None and pk not in self._overlay:
            self._seen[pk] = (row[2], row[3], row[4])
        return self._pending(row[0])

    def customers_by_email(self, email: str) -> list[CustomerState]:
        rows = self._all(
            f"SELECT pk, seq, version, {_EVENTS_SEQ} FROM customers WHERE email_lower = ?"
            f" {_CUSTOMER_ORDER}",
            (email_key(email),),
        )
        return self._states(rows)

    def list_customers(
        self, *, limit: int, starting_after: str | None, email: str | None
    ) -> list[CustomerState]:
        sql = f"SELECT pk, seq, version, {_EVENTS_SEQ} FROM customers"
        where: list[str] = []
        params: list[Any] = []
        if email is not None:
            where.append("email_lower = ?")
            params.append(email_key(email))
        if starting_after is not None:
            # After that customer's place in the full order, whether or not it matches the
            # email filter; an unknown pk starts from the beginning.
            cursor = self._one(
                "SELECT created_us, id IS NULL, coalesce(id, ''), pk FROM customers WHERE pk = ?",
                (starting_after,),
            )
            if cursor is not None:
                # Spelled so that the index on the order key serves it as a range.
                where.append(
                    "created_us >= ? AND (created_us > ? OR (id IS NULL, coalesce(id, ''), pk)"
                    " > (?, ?, ?))"
                )
                params.extend((cursor[0], *cursor))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" {_CUSTOMER_ORDER} LIMIT ?"
        params.append(limit)
        return self._states(self._all(sql, params))

    def due_customer_pks(self, now: datetime, limit: int | None) -> list[str]:
        rows = self._all(
            "SELECT pk FROM customers WHERE next_due_us <= ? ORDER BY next_due_us, seq LIMIT ?",
            (codec.to_micros(now), -1 if limit is None else limit),
        )
        return [r[0] for r in rows]

    # -- customers: writes ------------------------------------------------------------------
    def insert_customer(self, state: CustomerState) -> None:
        self._need_write()
        stored = replace(state, version=1)
        # Everything is encoded before the first statement, so a refused call writes nothing.
        head = head_params(stored, micros(state.due_at))
        children: Ops = []
        for spec in CHILDREN:
            replace_ops(children, spec, state.pk, getattr(state, spec.attr), clear=False)
        # The customer row first: it carries every uniqueness rule, so a refused insert has
        # written nothing and the transaction stays usable.
        cur = self._exec(
            "INSERT INTO customers (id, email_lower, created_us, next_due_us, data, pk, version)"
            " VALUES (?, ?, ?, ?, ?, ?, 1)",
            head,
        )
        seq = cur.lastrowid
        assert seq is not None
        self._run_ops(children)
        self._overlay[stored.pk] = (seq, stored)
        # A new row: its pk has no events (they go with their customer).
        self._cols[stored.pk] = [seq, 1, 0]
        self._moved.add(stored.pk)

    def save_customer(self, change: CustomerChange) -> None:
        """Write what ``change`` lists when the row is at ``change.base_version`` (what this
        transaction read or wrote); otherwise (a stale base) the head and every child row are
        rewritten. A track is one version bump and one row update."""
        self._need_write()
        after = change.state
        pk = after.pk
        written = self._overlay.get(pk)
        cols = self._cols.get(pk)
        if written is not None and written[1] is not _DELETED and cols is not None:
            seq, stored = written[0], written[1].version
        else:
            seen = self._seen.get(pk) or self._read_seen(pk)
            if seen is None:
                raise StoreError(f"cannot save customer {pk!r}: it does not exist")
            seq, stored = seen[0], seen[1] + seen[2]
            cols = self._cols[pk] = list(seen)
        row_version = cols[1]
        diff = stored == change.base_version
        balances = balances_only(change) if diff else None
        if balances is not None:
            # A track: the new balances alone (the event it appends moves the version); a
            # lock: the control state's column too, with the version.
            if after.control_state is not change.before.control_state:
                if (
                    self._exec(UPDATE_CONTROLS, (controls_text(after), seq, row_version)).rowcount
                    != 1
                ):
                    raise StoreError(
                        f"cannot save customer {pk!r}: it does not exist at version {stored}"
                    )
                cols[1] += 1
                self._moved.add(pk)
                self._unbumped.discard(pk)
            for balance in balances:
                self._exec(UPDATE_BALANCE, balance)
            if pk not in self._moved:
                self._unbumped.add(pk)
            self._overlay[pk] = (seq, with_version(after, stored + 1))
            self._seen.pop(pk, None)
            return
        # The write lock is held since BEGIN IMMEDIATE and (seq, stored) were read in this
        # transaction (or written by it), so the new version is known without RETURNING; the
        # ``version = ?`` guard turns any slip in that bookkeeping into an error, never a
        # silent overwrite. Encode first (see insert_customer), then write.
        if not diff:
            sql = (
                "UPDATE customers SET id = ?, email_lower = ?, created_us = ?, next_due_us = ?,"
                " data = ?, controls = NULL, version = version + 1 WHERE seq = ? AND version = ?"
            )
            head = head_params(after, micros(change.due_at))
            params: Sequence[Any] | None = (*head[:5], seq, row_version)
        elif change.head_changed:
            # SQLite rewrites the entries of every index on a column the SET names, changed
            # or not: name only the indexed columns whose value moved.
            values: list[Any]
            if controls_alone_changed(change):
                # A lock opened or settled: its column alone, not the packed head document.
                sets, values = ["controls = ?"], [controls_text(after)]
            else:
                head = head_params(after, micros(change.due_at))
                sets, values = ["data = ?", "controls = NULL"], [head[4]]
            if change.identity_changed:
                sets += ["id = ?", "email_lower = ?"]
                values += [head[0], head[1]]
            if change.before.created_at != after.created_at:
                sets.append("created_us = ?")
                values.append(head[2])
            if change.due_changed:
                sets.append("next_due_us = ?")
                values.append(micros(change.due_at))
            sql = (
                f"UPDATE customers SET {', '.join(sets)}, version = version + 1"
                " WHERE seq = ? AND version = ?"
            )
            params = (*values, seq, row_version)
        elif not change.due_changed:
            # The common case (a track): only the version would move, and the event a track
            # appends moves it instead (``_EVENTS_SEQ``); without one, ``_finish`` bumps it.
            sql, params = "", None
        else:
            sql = (
                "UPDATE customers SET next_due_us = ?, version = version + 1"
                " WHERE seq = ? AND version = ?"
            )
            params = (micros(change.due_at), seq, row_version)
        children: Ops = []
        if diff:
            for spec, child in changes_of(change):
                changed: Sequence[tuple[int, Any]] = child.changed
                if spec.attr == "rows" and changed:
                    changed = balance_ops(children, pk, change.before.rows, changed)
                change_ops(children, spec, pk, child.added, changed, child.moved, child.removed)
        else:
            for spec in CHILDREN:
                replace_ops(children, spec, pk, getattr(after, spec.attr), clear=True)
        if params is not None:
            if self._exec(sql, params).rowcount != 1:
                raise StoreError(
                    f"cannot save customer {pk!r}: it does not exist at version {stored}"
                )
            cols[1] += 1
            self._moved.add(pk)
            self._unbumped.discard(pk)
        self._run_ops(children)
        if params is None and pk not in self._moved:
            self._unbumped.add(pk)  # only once its writes are done: a refused save moves nothing
        # Within this transaction the next save's base; ``_finish`` sets the committed one.
        self._overlay[pk] = (seq, with_version(after, stored + 1))
        self._seen.pop(pk, None)

    def append_events(self, events: Sequence[EventRecord]) -> None:
        super().append_events(events)
        for e in events:
            pk = e.customer_pk
            cols = self._cols.get(pk)
            if cols is not None:
                cols[2] += 1
            else:
                # Its version moved: a later save in this transaction reads it again.
                self._seen.pop(pk, None)
            self._moved.add(pk)
            self._unbumped.discard(pk)

    def _run_ops(self, ops: Ops) -> None:
        for sql, params, many in ops:
            if many:
                self._many(sql, params)
            else:
                self._exec(sql, params)

    def delete_customer(self, pk: str) -> None:
        self._need_write()
        # Products, rows and entities follow by ON DELETE CASCADE; fingerprint trial claims stay.
        self._exec("DELETE FROM customers WHERE pk = ?", (pk,))
        for table in ("events", "idempotency", "trial_subject_claims", "invoices"):
            self._exec(f"DELETE FROM {table} WHERE customer_pk = ?", (pk,))
        self._overlay[pk] = (0, _DELETED)
        self._seen.pop(pk, None)
        self._cols.pop(pk, None)
        self._unbumped.discard(pk)


__all__ = ["Entry", "SqliteTransaction", "StoreSide"]
