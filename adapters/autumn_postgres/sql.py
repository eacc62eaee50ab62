"""The PostgreSQL store's SQL: the customer statements (one CTE per save, the documents read
as text), events, idempotency keys, claims and invoices. The child tables come from the SQL
stores' shared mapping (``autumn_sqldoc.mapping``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from typing import Any, Final

from autumn_core.changes import CustomerChange
from autumn_core.errors import StoreError
from autumn_core.model import CustomerState
from autumn_postgres import codec
from autumn_postgres.wire import Statement
from autumn_sqldoc.mapping import CHILDREN, Child, balance_alone_moved


def table(spec: Child) -> str:
    """The PostgreSQL table of a child spec (every table of the schema is ``autumn_``-named)."""
    return "autumn_" + spec.table


def _child_ctes(spec: Child, *, replace: bool, up: bool = True, delete: bool = True) -> str:
    """Upsert the given children and delete the removed ones, only if the head was written.

    Changes arrive as one JSON array per table (``{p}_up``: objects with id, pos, data and the
    extra columns), not as one SQL array per column: a single text parameter is far cheaper for
    the client to send than arrays of JSON strings, which psycopg must escape character by
    character. With ``replace`` the children not named in ``{p}_keep`` are deleted (the store
    does not know what the database holds); otherwise exactly the ids in ``{p}_del``.
    """
    p = spec.prefix
    extra_cols = "".join(f", {name}" for name, _ in spec.extra)
    extra_types = "".join(f", {name} {typ}" for name, typ in spec.extra)
    extra_x = "".join(f", x.{name}" for name, _ in spec.extra)
    extra_set = "".join(f", {name} = excluded.{name}" for name, _ in spec.extra)
    ids = "SELECT jsonb_array_elements_text(%({p}_{which})s::jsonb)"
    removed = (
        f"id NOT IN ({ids.format(p=p, which='keep')})"
        if replace
        else f"id IN ({ids.format(p=p, which='del')})"
    )
    upsert = f"""
    , {p}_up AS (
        INSERT INTO {table(spec)} (customer_pk, id, pos{extra_cols}, data)
        SELECT %(pk)s, x.id, x.pos{extra_x}, x.data
        FROM jsonb_to_recordset(%({p}_up)s::jsonb) AS x(id text, pos int{extra_types}, data jsonb)
        WHERE EXISTS (SELECT 1 FROM head)
        ON CONFLICT (customer_pk, id) DO UPDATE
        SET pos = excluded.pos{extra_set}, data = excluded.data
    )"""
    remove = f"""
    , {p}_del AS (
        DELETE FROM {table(spec)}
        WHERE customer_pk = %(pk)s AND {removed} AND EXISTS (SELECT 1 FROM head)
    )"""
    return (upsert if up else "") + (remove if delete else "")


CHILD_CTES: Final = "".join(_child_ctes(spec, replace=False) for spec in CHILDREN)
CHILD_CTES_REPLACE: Final = "".join(_child_ctes(spec, replace=True) for spec in CHILDREN)

INSERT_CUSTOMER: Final = f"""
WITH head AS (
    INSERT INTO autumn_customers (pk, id, email_lower, created_at, next_due_at, version, head)
    VALUES (%(pk)s, %(id)s, %(email_lower)s, %(created_at)s, %(due)s, %(version)s,
            %(head)s::jsonb)
    ON CONFLICT DO NOTHING
    RETURNING seq
){CHILD_CTES}
SELECT seq FROM head
"""

#: Save against the state this transaction knows the database holds: write only the difference,
#: and fail (40001, retryable) if the row is not at that version after all. ``head``: the new
#: head document, or ``controls``: the new control state alone (a lock opened or settled), set
#: into the stored head by the server; neither: the head stays.
UPDATE_CUSTOMER: Final = f"""
WITH head AS (
    UPDATE autumn_customers
    SET id = %(id)s, email_lower = %(email_lower)s, next_due_at = %(due)s,
        version = %(version)s,
        head = coalesce(
            %(head)s::jsonb, jsonb_set(head, '{{control_state}}', %(controls)s::jsonb), head
        )
    WHERE pk = %(pk)s AND version = %(base_version)s
    RETURNING seq
){CHILD_CTES}
SELECT autumn_assert(EXISTS (SELECT 1 FROM head), %(lost)s)
"""


#: The rows whose balance alone moved (a track): the server rewrites that one field of each
#: document (``r_bal``: objects with id and balance), so the client encodes no document.
BALANCES_CTE: Final = """
    , r_bal AS (
        UPDATE autumn_balance_rows AS t
        SET data = jsonb_set(t.data, '{balance}', to_jsonb(x.balance))
        FROM jsonb_to_recordset(%(r_bal)s::jsonb) AS x(id text, balance text)
        WHERE t.customer_pk = %(pk)s AND t.id = x.id AND EXISTS (SELECT 1 FROM head)
    )"""


@functools.cache
def update_customer(parts: tuple[bool, ...]) -> str:
    """``UPDATE_CUSTOMER`` with only the child CTEs that have work (``parts``: upserts and
    deletes per child spec, in order, then balance-only row updates): a track changes one
    balance row's balance, and the server plans and runs one CTE instead of six. At most 128
    variants, each prepared once per connection."""
    ctes = "".join(
        _child_ctes(spec, replace=False, up=parts[2 * i], delete=parts[2 * i + 1])
        for i, spec in enumerate(CHILDREN)
    )
    if parts[2 * len(CHILDREN)]:
        ctes += BALANCES_CTE
    return UPDATE_CUSTOMER.replace(CHILD_CTES, ctes)


@functools.cache
def wire_statement(sql: str) -> Statement:
    return Statement(sql)


def doc(text: str | None) -> Any:
    """A jsonb column read as text."""
    return json.loads(doc_text(text))


def doc_text(text: str | None) -> str:
    """A jsonb column's text, which must be there."""
    if text is None:
        raise StoreError("a stored document is missing")
    return text


#: Save without knowing what the database holds (``before`` was not read by this
#: transaction): write ``after`` whole and delete every child it does not list.
REPLACE_CUSTOMER: Final = f"""
WITH head AS (
    UPDATE autumn_customers
    SET id = %(id)s, email_lower = %(email_lower)s, next_due_at = %(due)s,
        version = version + 1, head = %(head)s::jsonb
    WHERE pk = %(pk)s
    RETURNING seq
){CHILD_CTES_REPLACE}
SELECT seq FROM head
"""


#: Separates the child documents of one table in a customer read. ``jsonb`` text output never
#: holds a raw newline (one inside a string is escaped as backslash-n), so splitting on it is exact.
DOC_SEP: Final = "\n"


def _agg(table: str, alias: str = "c") -> str:
    """The documents of one child table as text, in order, one per line ('' for none): the
    client parses only the documents it has not parsed before (``PostgresTransaction._state``).
    """
    # ``COLLATE "default"``: the customer's pk is ``COLLATE "C"``, a child's customer_pk has the
    # default collation, and compared under "C" the child's (customer_pk, id) index cannot be
    # used: every read of a customer would scan the whole child table.
    return (
        f"(SELECT coalesce(string_agg(t.data::text, chr(10) ORDER BY t.pos), '') FROM {table} t"
        f' WHERE t.customer_pk = {alias}.pk COLLATE "default")'
    )


AGGS: Final = ", ".join(_agg(table(spec)) for spec in CHILDREN)

#: Columns of a full customer read: pk, seq, version, head, products, rows, entities (the
#: documents as text).
FULL: Final = f"c.pk, c.seq, c.version, c.head::text, {AGGS}"

#: The same, but the documents only when the caller's cached (pk, seq, version) is stale.
HIT: Final = "(c.pk = %(hpk)s AND c.seq = %(hseq)s::bigint AND c.version = %(hver)s::bigint)"
CACHED: Final = (
    f"c.pk, c.seq, c.version, CASE WHEN {HIT} THEN NULL ELSE c.head::text END, "
    + ", ".join(f"CASE WHEN {HIT} THEN NULL ELSE {_agg(table(spec))} END" for spec in CHILDREN)
)

READ_BY_ID: Final = f"SELECT {CACHED} FROM autumn_customers c WHERE c.id = %(key)s"
READ_BY_PK: Final = f"SELECT {CACHED} FROM autumn_customers c WHERE c.pk = %(key)s"

#: Write path: lock the customer row; the documents are read by the *next* statement of the same
#: pipeline (``READ_BY_ID`` / ``READ_BY_PK``), which starts after the lock was granted.
LOCK_BY_ID: Final = "SELECT c.pk FROM autumn_customers c WHERE c.id = %(key)s FOR UPDATE"
LOCK_BY_PK: Final = "SELECT c.pk FROM autumn_customers c WHERE c.pk = %(key)s FOR UPDATE"

DELETE_CUSTOMER: Final = """
WITH a AS (DELETE FROM autumn_customer_products WHERE customer_pk = %(pk)s),
     b AS (DELETE FROM autumn_balance_rows WHERE customer_pk = %(pk)s),
     e AS (DELETE FROM autumn_entities WHERE customer_pk = %(pk)s),
     ev AS (DELETE FROM autumn_events WHERE customer_pk = %(pk)s),
     i AS (DELETE FROM autumn_idempotency WHERE customer_pk = %(pk)s),
     t AS (DELETE FROM autumn_trial_subject_claims WHERE customer_pk = %(pk)s),
     inv AS (DELETE FROM autumn_invoices WHERE customer_pk = %(pk)s)
DELETE FROM autumn_customers WHERE pk = %(pk)s
"""

#: One event (what a track appends): a plain VALUES row, the columns sent beside the document.
INSERT_EVENT: Final = """
INSERT INTO autumn_events
    (id, customer_pk, entity_id, feature_id, event_name, value, ts, created_at, data)
VALUES (%(id)s, %(pk)s, %(entity)s, %(feature)s, %(name)s, %(value)s::numeric,
        %(ts)s::timestamptz, %(created)s::timestamptz, %(data)s::jsonb)
"""

#: One JSON array of event documents; the indexed columns are taken from the documents.
INSERT_EVENTS: Final = """
INSERT INTO autumn_events
    (id, customer_pk, entity_id, feature_id, event_name, value, ts, created_at, data)
SELECT d->>'id', d->>'customer_pk', d->>'entity_id', d->>'feature_id', d->>'event_name',
       (d->>'value')::numeric, (d->>'timestamp')::timestamptz, (d->>'created_at')::timestamptz, d
FROM jsonb_array_elements(%(events)s::jsonb) AS d
"""

#: A lock's index record, then its customer locked, then read (``balances.finalize``): the
#: customer is named by the record (``COLLATE "C"``: the customers' pk index serves it).
_PENDING_OWNER: Final = (
    '(SELECT p.customer_pk COLLATE "C" FROM autumn_pending p WHERE p.key = %(key)s)'
)
PENDING: Final = "SELECT data FROM autumn_pending WHERE key = %(key)s"
LOCK_BY_PENDING: Final = (
    f"SELECT c.pk FROM autumn_customers c WHERE c.pk = {_PENDING_OWNER} FOR UPDATE"
)
#: Its committed version only: the client's cache holds it after the reservation.
READ_BY_PENDING: Final = (
    f"SELECT c.pk, c.seq, c.version FROM autumn_customers c WHERE c.pk = {_PENDING_OWNER}"
)

#: The statements of the hot paths, sent through ``wire.Wire`` (see the module docstring).
W_LOCK_BY_ID: Final = Statement(LOCK_BY_ID)
W_LOCK_BY_PK: Final = Statement(LOCK_BY_PK)
W_READ_BY_ID: Final = Statement(READ_BY_ID)
W_READ_BY_PK: Final = Statement(READ_BY_PK)
W_EVENTS: Final = Statement(INSERT_EVENTS)
W_EVENT: Final = Statement(INSERT_EVENT)
W_PENDING: Final = Statement(PENDING)
W_LOCK_BY_PENDING: Final = Statement(LOCK_BY_PENDING)
W_READ_BY_PENDING: Final = Statement(READ_BY_PENDING)


LIST_EVENTS: Final = """
SELECT data FROM autumn_events
WHERE customer_pk = %(pk)s
  AND (%(feature)s::text IS NULL OR feature_id = %(feature)s::text)
  AND (%(start)s::timestamptz IS NULL OR ts >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR ts < %(end)s::timestamptz)
  AND (%(after)s::text IS NULL OR seq > (
        SELECT a.seq FROM autumn_events a
        WHERE a.id = %(after)s::text AND a.customer_pk = %(pk)s))
ORDER BY seq
LIMIT %(limit)s
"""

PUT_IDEMPOTENCY: Final = """
INSERT INTO autumn_idempotency AS i (operation, customer_pk, key, created_at, data)
VALUES (%s, %s, %s, %s, %s::jsonb)
ON CONFLICT (operation, customer_pk, key) DO UPDATE
SET created_at = excluded.created_at, data = excluded.data
WHERE i.created_at <= %s::timestamptz
RETURNING 1
"""

CLAIM_TRIAL: Final = """
WITH s AS (
    INSERT INTO autumn_trial_subject_claims (product_id, customer_pk, entity_key)
    VALUES (%(product)s, %(pk)s, %(entity)s)
    ON CONFLICT DO NOTHING RETURNING 1
), f AS (
    INSERT INTO autumn_trial_fingerprint_claims (product_id, fingerprint)
    SELECT %(product)s, %(fp)s::text WHERE %(fp)s::text IS NOT NULL
    ON CONFLICT DO NOTHING RETURNING 1
)
SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM f)
"""

TRIAL_CLAIMED: Final = """
SELECT EXISTS (
    SELECT 1 FROM autumn_trial_subject_claims
    WHERE product_id = %(product)s AND customer_pk = %(pk)s AND entity_key = %(entity)s
) OR (%(fp)s::text IS NOT NULL AND EXISTS (
    SELECT 1 FROM autumn_trial_fingerprint_claims
    WHERE product_id = %(product)s AND fingerprint = %(fp)s::text
))
"""

SAVE_INVOICE: Final = """
INSERT INTO autumn_invoices
    (id, customer_pk, gateway_invoice_id, status, total, currency, created_at, data)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (id) DO UPDATE
SET customer_pk = excluded.customer_pk, gateway_invoice_id = excluded.gateway_invoice_id,
    status = excluded.status, total = excluded.total, currency = excluded.currency,
    created_at = excluded.created_at, data = excluded.data
"""


def _balance_params(
    params: dict[str, Any], before: Sequence[Any], changed: Sequence[tuple[int, Any]]
) -> Sequence[tuple[int, Any]]:
    """Set ``r_bal`` to the changed rows whose balance alone moved, in place (a track);
    return the other changed rows (their documents are written whole)."""
    balances: list[dict[str, str]] = []
    rest: list[tuple[int, Any]] = []
    for pos, row in changed:
        old = before[pos] if pos < len(before) else None
        if old is not None and old.id == row.id and balance_alone_moved(old, row):
            balances.append({"id": row.id, "balance": str(row.balance)})
        else:
            rest.append((pos, row))
    params["r_bal"] = codec.dump(balances) if balances else "[]"
    return rest


def child_params(
    params: dict[str, Any], change: CustomerChange | None, state: CustomerState
) -> None:
    """Fill the JSON parameters of the child CTEs.

    With a ``change`` (applied to what the database holds) only the children it adds, changes
    or moves are listed in ``*_up`` and the removed ones in ``*_del``; without one every child
    of ``state`` is listed, and ``*_keep`` names them all (only then: the diff statements do not
    take it).
    """
    for i, spec in enumerate(CHILDREN):
        p = spec.prefix
        if change is None:
            items = getattr(state, spec.attr)
            listed: Iterable[tuple[int, Any]] = enumerate(items)
            removed: tuple[str, ...] = ()
            params[f"{p}_keep"] = codec.dump([getattr(x, spec.key) for x in items])
        else:
            child = change.children[i]
            changed: Sequence[tuple[int, Any]] = child.changed
            if spec.attr == "rows":
                changed = _balance_params(params, change.before.rows, changed)
            listed = (*child.added, *changed, *child.moved)
            removed = child.removed
        up: list[dict[str, Any]] = []
        for pos, item in listed:
            row = {"id": getattr(item, spec.key), "pos": pos, "data": codec.unstructure(item)}
            for name, _ in spec.extra:
                row[name] = getattr(item, name)
            up.append(row)
        params[f"{p}_up"] = codec.dump(up) if up else "[]"
        params[f"{p}_del"] = codec.dump(list(removed)) if removed else "[]"
