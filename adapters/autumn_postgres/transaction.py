"""The PostgreSQL transaction: the customer aggregate (locked and read in one round trip,
parsed once per committed version, saved as one CTE of what the core's ``CustomerChange``
lists) on top of the other records (``records``) and the session (``session``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

import attrs

from autumn_core.changes import CustomerChange, email_key
from autumn_core.errors import StoreError, UniqueViolation
from autumn_core.model import CustomerState, PendingRecord, replace, with_version
from autumn_postgres import codec, sql
from autumn_postgres.errors import translate, translated
from autumn_postgres.outbox import OutboxTable
from autumn_postgres.records import Records
from autumn_postgres.session import NO_DOCS, Entry
from autumn_postgres.wire import ServerError
from autumn_sqldoc.mapping import (
    CHILDREN,
    controls_alone_changed,
    controls_text,
    email_lower,
    head_text,
    order_by,
)

#: The core's customer order; ``COLLATE "C"`` compares ids by code point (UTF-8 bytes).
CUSTOMER_ORDER: Final = order_by("created_at", alias="c", collate=' COLLATE "C"')

#: A page of customers (``list_customers``), optionally of one email, after a cursor's pk. The
#: cursor's created_at bounds the index scan: a page deep in the list reads from its place on.
LIST_CUSTOMERS: Final = f"""
            SELECT {sql.FULL} FROM autumn_customers c
            WHERE (%(email)s::text IS NULL OR c.email_lower = %(email)s::text)
              -- a bound the index on (created_at, pk) starts from, instead of filtering every
              -- row before the cursor (the row comparison below is no index condition)
              AND c.created_at >= COALESCE(
                  (SELECT a.created_at FROM autumn_customers a WHERE a.pk = %(after)s::text),
                  '-infinity'::timestamptz)
              AND (%(after)s::text IS NULL
                   OR NOT EXISTS (SELECT 1 FROM autumn_customers a WHERE a.pk = %(after)s::text)
                   OR (c.created_at, c.id IS NULL, COALESCE(c.id, '') COLLATE "C", c.pk) > (
                       SELECT a.created_at, a.id IS NULL, COALESCE(a.id, '') COLLATE "C", a.pk
                       FROM autumn_customers a WHERE a.pk = %(after)s::text))
            {CUSTOMER_ORDER}
            LIMIT %(limit)s
            """


class PostgresTransaction(Records, OutboxTable):
    """One unit of work on one pooled connection; also its own context manager.

    Every statement goes through one ``Wire`` that owns the connection from ``BEGIN`` to
    ``COMMIT``/``ROLLBACK`` (see ``autumn_postgres.wire``)."""

    def __enter__(self) -> PostgresTransaction:
        super().__enter__()
        return self

    def _lookup(self, pk: str) -> Entry | None:
        if pk in self._staged:
            return self._staged[pk]
        return self._store.cache.get(pk)

    def _stage(self, pk: str, entry: Entry | None) -> None:
        if self._write:
            self._staged[pk] = entry
        elif entry is not None:
            # A read transaction only ever sees committed rows: publish at once.
            self._store.cache.put(pk, entry)

    def _state(
        self,
        hint: Entry | None,
        pk: str,
        seq: int,
        version: int,
        head: Any,
        products: Any,
        rows: Any,
        entities: Any,
    ) -> CustomerState:
        """Build (or reuse) the parsed aggregate for one customer row.

        The documents come as text (head; each child table's documents one per line). A stale
        ``hint`` (another process saved the customer since) still says what the documents it was
        parsed from were: only the documents whose text is new are parsed, the records of the
        others are shared (records are immutable).
        """
        if hint is not None and hint[0] == seq and hint[1] == version:
            self._held[pk] = (seq, hint[2])
            return hint[2]
        if head is None or products is None or rows is None or entities is None:
            raise StoreError(f"customer {pk!r} changed while it was being read")
        prev = hint[3] if hint is not None else None
        memos: list[dict[str, Any]] = []
        children: list[tuple[Any, ...]] = []
        for i, (spec, text) in enumerate(zip(CHILDREN, (products, rows, entities), strict=True)):
            known = prev[2][i] if prev is not None else NO_DOCS
            memo: dict[str, Any] = {}
            items: list[Any] = []
            if text:
                for doc in text.split(sql.DOC_SEP):
                    record = known.get(doc)
                    if record is None:
                        record = codec.structure(json.loads(doc), spec.cls)
                    memo[doc] = record
                    items.append(record)
            memos.append(memo)
            children.append(tuple(items))
        if prev is not None and prev[1] is not None and prev[0] == head:
            source = prev[1]
        else:
            data = json.loads(head)
            data["version"] = version
            source = codec.structure(data, CustomerState)
        state = replace(
            source,
            products=children[0],
            rows=children[1],
            entities=children[2],
            version=version,
        )
        self._held[pk] = (seq, state)
        self._stage(pk, (seq, version, state, (head, source, tuple(memos))))
        return state

    def _hint_params(self, key: str, hint: Entry | None, hint_pk: str | None) -> dict[str, Any]:
        if hint is None:
            return {"key": key, "hpk": None, "hseq": None, "hver": None}
        return {"key": key, "hpk": hint_pk, "hseq": hint[0], "hver": hint[1]}

    # -- customers ------------------------------------------------------------------------------
    @translated
    def customer_pk(self, customer_id: str) -> str | None:
        """The pk for an id; also fetches the whole customer in the same statement.

        The next step of every call is loading that customer, so a read transaction reads it
        now (a ``check`` is one round trip) and a write transaction locks it now (the lock a
        ``load_customer(for_update=True)`` would take next; customer row first either way).
        """
        hint_pk = self._store._ids.get(customer_id)
        hint = self._lookup(hint_pk) if hint_pk is not None else None
        params = self._hint_params(customer_id, hint, hint_pk)
        if self._optimistic and hint_pk is not None and self._store._is_contended(hint_pk):
            self._optimistic = False  # a hot customer: lock it rather than race for it
        if self._write and not self._optimistic:
            row = self._locked_row(True, customer_id, params)
        else:
            row = self._customer_row(sql.W_READ_BY_ID, sql.READ_BY_ID, params)
        if row is None:
            return None
        pk = str(row[0])
        self._prefetched[pk] = self._state(hint if hint_pk == pk else None, *row)
        self._store._remember_id(customer_id, pk)
        return pk

    @translated
    def load_customer(self, pk: str, *, for_update: bool = False) -> CustomerState | None:
        state = self._prefetched.pop(pk, None)
        if state is not None:
            return state
        hint = self._lookup(pk)
        params = self._hint_params(pk, hint, pk)
        if self._optimistic and for_update and self._store._is_contended(pk):
            self._optimistic = False  # a hot customer: lock it rather than race for it
        if for_update and self._write and not self._optimistic:
            row = self._locked_row(False, pk, params)
        else:
            row = self._customer_row(sql.W_READ_BY_PK, sql.READ_BY_PK, params)
        return None if row is None else self._state(hint, *row)

    @translated
    def get_pending_locking_customer(self, key: str) -> PendingRecord | None:
        """``get_pending``; in a write transaction the record's customer is locked in the same
        round trip, and its committed version read: statements pipelined, the record, the
        lock, then the version, read once the lock is granted (as ``_locked_row``). An
        optimistic transaction locks nothing (the save's version check refuses a lost race, as
        for a track). When the cache holds that version (the process that reserved
        finalizes), the customer is served from it; otherwise ``load_customer`` reads it."""
        if not self._write:
            return self.get_pending(key)
        wire = self._wire
        wire.kept.clear()
        wire.keep(sql.W_PENDING, {"key": key})
        if not self._optimistic:
            wire.keep(sql.W_LOCK_BY_PENDING, {"key": key})
        row = self._decode("one", wire.one(sql.W_READ_BY_PENDING, {"key": key}))
        if self._optimistic:
            locked = None if row is None else row[0]
        else:
            lock = self._decode("one", wire.kept.pop())
            locked = None if lock is None else lock[0]
        found = self._decode("one", wire.kept.pop())
        if found is None:
            return None
        record = codec.decode_pending(sql.doc_text(found[0]))
        # The record may have moved to another customer between the statements (forgotten and
        # its id used again): then nothing is kept, and the customer is loaded the usual way;
        # so is a hot customer in an optimistic transaction (``load_customer`` locks it).
        if row is None or not locked == row[0] == record.customer_pk:
            return record
        pk, seq, version = row[0], int(row[1]), int(row[2])
        if self._optimistic and self._store._is_contended(pk):
            return record
        hint = self._lookup(pk)
        if pk not in self._held and hint is not None and hint[0] == seq and hint[1] == version:
            self._held[pk] = (seq, hint[2])
            self._prefetched[pk] = hint[2]
        return record

    def _states(self, rows: list[Any]) -> list[CustomerState]:
        return [
            self._state(self._lookup(str(r[0])), str(r[0]), int(r[1]), int(r[2]), *r[3:])
            for r in rows
        ]

    @translated
    def customers_by_email(self, email: str) -> list[CustomerState]:
        rows = self._all(
            f"SELECT {sql.FULL} FROM autumn_customers c WHERE c.email_lower = %s {CUSTOMER_ORDER}",
            (email_key(email),),
        )
        return self._states(rows)

    @translated
    def insert_customer(self, state: CustomerState) -> None:
        self._need_write()
        params: dict[str, Any] = {
            "pk": state.pk,
            "id": state.id,
            "email_lower": email_lower(state),
            "created_at": state.created_at,
            "due": state.due_at,
            "version": 1,
            "head": head_text(state),
        }
        sql.child_params(params, None, state)
        row = self._one(sql.INSERT_CUSTOMER, params)
        if row is None:
            raise UniqueViolation(
                f"customer pk {state.pk!r}, id {state.id!r} or id-less email {state.email!r}"
                " is taken"
            )
        seq = int(row[0])
        inserted = attrs.evolve(state, version=1)
        self._held[state.pk] = (seq, inserted)
        self._stage(state.pk, (seq, 1, inserted, None))
        if state.id is not None:
            self._store._remember_id(state.id, state.pk)

    @translated
    def save_customer(self, change: CustomerChange) -> None:
        """Write what ``change`` lists when this transaction knows the database holds the
        customer at ``change.base_version`` (it read, inserted or saved it); a customer it never
        read, or holds at another version, is written whole, so a stale base can never leave a
        child of another state behind."""
        self._need_write()
        after = change.state
        held = self._held.get(after.pk)
        base = held[1] if held is not None and held[1].version == change.base_version else None
        params: dict[str, Any] = {
            "pk": after.pk,
            "id": after.id,
            "email_lower": email_lower(after),
            "due": change.due_at,
        }
        if base is None:
            sql.child_params(params, None, after)
            statement = sql.REPLACE_CUSTOMER
            params["head"] = head_text(after)
            identity_changed = True
        else:
            sql.child_params(params, change, after)
            statement = sql.update_customer(
                (
                    *(params[f"{c.prefix}_{w}"] != "[]" for c in CHILDREN for w in ("up", "del")),
                    params["r_bal"] != "[]",
                )
            )
            params["version"] = base.version + 1
            params["base_version"] = base.version
            params["head"] = params["controls"] = None
            if controls_alone_changed(change):
                params["controls"] = controls_text(after)
            elif change.head_changed:
                params["head"] = head_text(after)
            params["lost"] = f"customer {after.pk!r} was changed by another transaction"
            identity_changed = change.identity_changed
        if identity_changed:
            # A new id or email may be taken: find out now (the caller turns it into a Conflict)
            # and keep the transaction usable.
            self._fire("SAVEPOINT autumn_identity")
            try:
                self._one(statement, params)
            except ServerError as exc:
                if exc.sqlstate != "23505":
                    raise
                self._wire.sync()  # leave the skipped-statements state of the pipeline
                self._fire("ROLLBACK TO SAVEPOINT autumn_identity")
                raise translate(exc) from exc
            self._fire("RELEASE SAVEPOINT autumn_identity")
        else:
            self._wire.fire(sql.wire_statement(statement), params)
        if held is not None and base is not None:
            saved = with_version(after, base.version + 1)
            self._held[after.pk] = (held[0], saved)
            # What ``base`` was parsed from still says how its documents parse; the head text
            # only while the head was not rewritten (then the row keeps exactly that text).
            known = self._lookup(after.pk)
            parts = known[3] if known is not None and known[2] is base else None
            rewritten = params["head"] is not None or params.get("controls") is not None
            if parts is not None and rewritten:
                parts = (None, None, parts[2])
            self._stage(after.pk, (held[0], saved.version, saved, parts))
        else:
            self._held.pop(after.pk, None)
            self._stage(after.pk, None)
        if after.id is not None:
            self._store._remember_id(after.id, after.pk)

    @translated
    def delete_customer(self, pk: str) -> None:
        self._need_write()
        self._fire(sql.DELETE_CUSTOMER, {"pk": pk})
        self._stage(pk, None)
        self._prefetched.pop(pk, None)
        self._held.pop(pk, None)

    @translated
    def list_customers(
        self, *, limit: int, starting_after: str | None, email: str | None
    ) -> list[CustomerState]:
        rows = self._all(
            LIST_CUSTOMERS,
            {
                "email": None if email is None else email_key(email),
                "after": starting_after,
                "limit": limit,
            },
        )
        return self._states(rows)

    @translated
    def due_customer_pks(self, now: datetime, limit: int | None) -> list[str]:
        rows = self._all(
            "SELECT pk FROM autumn_customers WHERE next_due_at <= %s"
            " ORDER BY next_due_at, pk LIMIT %s",
            (now, limit),
        )
        return [str(r[0]) for r in rows]


__all__ = ["PostgresTransaction"]
