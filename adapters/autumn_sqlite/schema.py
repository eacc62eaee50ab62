"""The SQLite schema, as an ordered list of forward migrations.

``MIGRATIONS[i]`` upgrades a database from schema version ``i`` to ``i + 1``; the version lives in
``PRAGMA user_version`` (0 for a new, empty file). Opening a store applies the missing steps in
one write transaction, so a crash half-way leaves the old version intact, and two processes
opening the same old file at once migrate it exactly once. A database whose version is newer than
``len(MIGRATIONS)`` was written by a newer autumn_sqlite and is refused: running old code on it
could silently drop what the new schema means.

Rules for adding a step: append, never edit a released step; keep each step a list of plain
statements (no ``executescript``, which would commit half-way); and add a fixture of the
previous version to the migration tests.

Design notes for version 1:

- ``customers`` holds the head of the ``CustomerState`` aggregate as JSON (``data``), plus the
  columns SQL must see: ``id`` (unique), ``email_lower`` (unique among id-less customers, C6),
  ``created_us`` for ordering, ``next_due_us`` for ``process_due``, and ``version``.
  ``seq`` is AUTOINCREMENT so it is never reused: (seq, version) identifies one committed state
  of one customer forever, which is what the adapter's parsed-state cache is keyed by.
- ``customer_products``, ``balance_rows`` and ``entities`` hold one JSON document per child
  record, keyed by (customer, child id), so a ``track`` rewrites one small row, not the customer.
  ``pos`` keeps the order of the aggregate's tuples.
- Money and quantities live only inside JSON, as exact decimal strings; no REAL column exists.
- Uniqueness the domain relies on (docs/rules.md I5) is a constraint here, never a read-then-write:
  customer id, id-less email, idempotency key, trial claims, renewal markers, gateway event ids.
"""

from __future__ import annotations

from autumn_sqlite.outbox import V4 as OUTBOX_V4

#: The application_id written into every autumn database ("AUTM"), so a foreign SQLite file is
#: recognised and refused instead of being migrated into.
APPLICATION_ID = 0x4155544D

V1: tuple[str, ...] = (
    """
    CREATE TABLE customers (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        pk TEXT NOT NULL UNIQUE,
        id TEXT UNIQUE,
        email_lower TEXT,
        created_us INTEGER NOT NULL,
        next_due_us INTEGER,
        version INTEGER NOT NULL,
        data TEXT NOT NULL
    )
    """,
    "CREATE UNIQUE INDEX customers_idless_email ON customers (email_lower) WHERE id IS NULL",
    "CREATE INDEX customers_email ON customers (email_lower)",
    "CREATE INDEX customers_created ON customers (created_us, pk)",
    "CREATE INDEX customers_due ON customers (next_due_us) WHERE next_due_us IS NOT NULL",
    """
    CREATE TABLE customer_products (
        customer_pk TEXT NOT NULL REFERENCES customers (pk) ON DELETE CASCADE,
        instance_id TEXT NOT NULL,
        pos INTEGER NOT NULL,
        product_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (customer_pk, instance_id)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX customer_products_version ON customer_products (product_id, version)",
    """
    CREATE TABLE balance_rows (
        customer_pk TEXT NOT NULL REFERENCES customers (pk) ON DELETE CASCADE,
        id TEXT NOT NULL,
        pos INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (customer_pk, id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE entities (
        customer_pk TEXT NOT NULL REFERENCES customers (pk) ON DELETE CASCADE,
        id TEXT NOT NULL,
        pos INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (customer_pk, id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        customer_pk TEXT NOT NULL,
        feature_id TEXT,
        ts_us INTEGER NOT NULL,
        data TEXT NOT NULL
    )
    """,
    "CREATE INDEX events_customer ON events (customer_pk, seq)",
    """
    CREATE TABLE idempotency (
        operation TEXT NOT NULL,
        customer_pk TEXT NOT NULL,
        key TEXT NOT NULL,
        created_us INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (operation, customer_pk, key)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX idempotency_customer ON idempotency (customer_pk)",
    """
    CREATE TABLE trial_subject_claims (
        product_id TEXT NOT NULL,
        customer_pk TEXT NOT NULL,
        entity_key TEXT NOT NULL,
        PRIMARY KEY (product_id, customer_pk, entity_key)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX trial_subject_claims_customer ON trial_subject_claims (customer_pk)",
    """
    CREATE TABLE trial_fingerprint_claims (
        product_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        PRIMARY KEY (product_id, fingerprint)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE renewal_markers (
        cp_instance_id TEXT NOT NULL,
        period_start_us INTEGER NOT NULL,
        PRIMARY KEY (cp_instance_id, period_start_us)
    ) WITHOUT ROWID
    """,
    "CREATE TABLE gateway_events (event_id TEXT PRIMARY KEY) WITHOUT ROWID",
    """
    CREATE TABLE invoices (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        customer_pk TEXT NOT NULL,
        gateway_invoice_id TEXT,
        data TEXT NOT NULL
    )
    """,
    "CREATE INDEX invoices_customer ON invoices (customer_pk, seq)",
    """
    CREATE INDEX invoices_gateway ON invoices (gateway_invoice_id, seq)
    WHERE gateway_invoice_id IS NOT NULL
    """,
    """
    CREATE TABLE pending (
        key TEXT PRIMARY KEY,
        customer_pk TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX pending_kind ON pending (kind, key)",
    """
    CREATE TABLE product_versions (
        product_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (product_id, version)
    ) WITHOUT ROWID
    """,
)

#: Version 2: customers are listed by (created_at, id with id-less last, pk) (docs/rules.md C11);
#: the index on exactly that key lets a page stop after ``limit`` rows instead of sorting all.
V2: tuple[str, ...] = (
    "CREATE INDEX customers_order ON customers (created_us, id IS NULL, id, pk)",
    "DROP INDEX customers_created",
)

#: Version 3: events are keyed by (customer, sequence) in a table without rowid, and neither
#: their id nor their customer has an index of its own: a track appends to one page of one
#: b-tree instead of three (the table, the unique id index, the customer index), and an event
#: costs its row only. ``seq`` orders a customer's events (the old global sequence is kept, new
#: events take the customer's next one); an event id is looked up among its customer's events
#: (``list_events(starting_after=...)``), and ids are unique because the core makes them so.
V3: tuple[str, ...] = (
    """
    CREATE TABLE events_v3 (
        customer_pk TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        feature_id TEXT,
        ts_us INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (customer_pk, seq)
    ) WITHOUT ROWID
    """,
    "INSERT INTO events_v3 (customer_pk, seq, id, feature_id, ts_us, data)"
    " SELECT customer_pk, seq, id, feature_id, ts_us, data FROM events",
    "DROP TABLE events",
    "ALTER TABLE events_v3 RENAME TO events",
)

#: Version 5: what a track rewrites has a column of its own, so a track encodes no document.
#: ``balance_rows.balance``, when not NULL, is the row's balance (its document's ``balance`` is
#: then stale): a save that changes only a row's balance sets this column alone; a save that
#: rewrites the document sets it back to NULL. ``events.value`` holds the value of an event
#: that has nothing but a value, a feature and one time (``ts_us``): its ``data`` is ``''``.
V5: tuple[str, ...] = (
    "ALTER TABLE balance_rows ADD COLUMN balance TEXT",
    "ALTER TABLE events ADD COLUMN value TEXT",
)

#: Version 6: a customer's control state (open locks, usage windows) has a column of its own,
#: as plain JSON, so reserving and settling a lock rewrite it alone, not the packed head.
#: ``customers.controls``, when not NULL, is the control state (the head document's is then
#: stale); a save that rewrites the head document sets it back to NULL.
V6: tuple[str, ...] = ("ALTER TABLE customers ADD COLUMN controls TEXT",)

#: ``MIGRATIONS[i]`` takes a database from version ``i`` to ``i + 1``.
MIGRATIONS: list[tuple[str, ...]] = [V1, V2, V3, OUTBOX_V4, V5, V6]


def current_version() -> int:
    """The schema version this code writes (read at call time, so tests can add a step)."""
    return len(MIGRATIONS)


__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "OUTBOX_V4",
    "V1",
    "V2",
    "V3",
    "V5",
    "V6",
    "current_version",
]
