"""The PostgreSQL schema, as an ordered list of forward migrations.

``MIGRATIONS[i]`` upgrades a database from schema version ``i`` to ``i + 1``. The applied
versions are rows of ``autumn_schema_migrations`` (one row per step, with who applied it and
when), so the current version is their maximum and a test can prove that a step ran once.

Opening a store migrates under a transaction-scoped advisory lock (``MIGRATION_LOCK_KEY``): every
process that starts at the same time queues on the lock, the first one applies the missing steps
in one transaction (DDL is transactional in PostgreSQL, so a crash half-way leaves the old
version), and the others find nothing left to do. A database whose version is newer than
``len(MIGRATIONS)`` was written by a newer autumn_postgres and is refused: running old code on it
could silently ignore what the new schema means.

Rules for adding a step: append, never edit a released step; and extend the migration tests.

Design notes for version 1 (every table is prefixed ``autumn_`` so the engine can share a
database with the application that embeds it):

- ``autumn_customers`` holds the head of the ``CustomerState`` aggregate as ``jsonb`` (``head``)
  plus the columns SQL must see: ``id`` (unique), ``email_lower`` (unique among id-less customers,
  a partial unique index), ``created_at`` for ordering, ``next_due_at`` for ``process_due``, and
  ``version``. ``seq`` is an identity column that is never reused, so (pk, seq, version)
  identifies one committed state of one customer forever: the key of the parsed-state cache.
- ``autumn_customer_products``, ``autumn_balance_rows`` and ``autumn_entities`` hold one ``jsonb``
  document per child record, keyed by (customer, child id), so a ``track`` rewrites one small
  row, not the customer. ``pos`` keeps the order of the aggregate's tuples.
- Keys that lists are ordered by (customer pk, pending key) are ``COLLATE "C"``: code-point
  order, as Python sorts strings, whatever the database's default collation.
- Money and quantities that SQL sees are ``numeric`` (event values, invoice totals); times are
  ``timestamptz``. Nothing is ``real`` / ``double precision``.
- Uniqueness the domain relies on (docs/rules.md I5) is a constraint, never a read-then-write:
  customer id, id-less email, idempotency key, both trial claims, renewal markers, gateway event
  ids.
- ``autumn_lock_customer`` locks a customer row (by pk or id) and returns its documents in one
  statement, read after the lock was granted (see its comment); unchanged documents are skipped
  when the caller's cached (pk, seq, version) is current. Since then the store sends the lock
  and the read as two pipelined statements (cheaper on the server; see store.py) and no longer
  calls it; it stays so that processes of the previous release keep working during an upgrade.
- ``autumn_assert`` raises SQLSTATE 40001 from inside a statement. A customer save checks the
  version it read that way, so a save that lost a race fails (and is retried by the caller) in
  the same round trip as the write, without the client waiting for a row count.
"""

from __future__ import annotations

from typing import Final

from autumn_postgres.outbox import V2 as OUTBOX_V2

#: Key of the advisory lock taken while migrating (the bytes ``autumn_s`` as a 63-bit integer).
MIGRATION_LOCK_KEY: Final = int.from_bytes(b"autumn_s", "big") & 0x7FFF_FFFF_FFFF_FFFF

MIGRATIONS_TABLE: Final = "autumn_schema_migrations"

CREATE_MIGRATIONS_TABLE: Final = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by_pid integer NOT NULL DEFAULT pg_backend_pid()
)
"""

V1: tuple[str, ...] = (
    """
    CREATE FUNCTION autumn_assert(ok boolean, message text) RETURNS boolean
    LANGUAGE plpgsql AS $$
    BEGIN
        IF ok IS NOT TRUE THEN
            RAISE EXCEPTION USING ERRCODE = 'serialization_failure', MESSAGE = message;
        END IF;
        RETURN true;
    END
    $$
    """,
    """
    CREATE FUNCTION autumn_lock_customer(
        p_pk text, p_id text, h_pk text, h_seq bigint, h_ver bigint,
        OUT o_pk text, OUT o_seq bigint, OUT o_version bigint, OUT o_head jsonb,
        OUT o_products jsonb, OUT o_rows jsonb, OUT o_entities jsonb
    ) RETURNS SETOF record
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        c record;
    BEGIN
        -- Lock first. Each statement of a VOLATILE function takes a new snapshot, so the
        -- children below are read as committed after the lock was granted; a single
        -- SELECT ... FOR UPDATE with subqueries would read them as of before the wait.
        IF p_pk IS NOT NULL THEN
            SELECT x.pk, x.seq, x.version, x.head INTO c
            FROM autumn_customers x WHERE x.pk = p_pk FOR UPDATE;
        ELSE
            SELECT x.pk, x.seq, x.version, x.head INTO c
            FROM autumn_customers x WHERE x.id = p_id FOR UPDATE;
        END IF;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        o_pk := c.pk;
        o_seq := c.seq;
        o_version := c.version;
        IF c.pk = h_pk AND c.seq = h_seq AND c.version = h_ver THEN
            RETURN NEXT;  -- the caller's cached parse is current: no documents
            RETURN;
        END IF;
        o_head := c.head;
        SELECT coalesce(jsonb_agg(t.data ORDER BY t.pos), '[]'::jsonb) INTO o_products
        FROM autumn_customer_products t WHERE t.customer_pk = c.pk;
        SELECT coalesce(jsonb_agg(t.data ORDER BY t.pos), '[]'::jsonb) INTO o_rows
        FROM autumn_balance_rows t WHERE t.customer_pk = c.pk;
        SELECT coalesce(jsonb_agg(t.data ORDER BY t.pos), '[]'::jsonb) INTO o_entities
        FROM autumn_entities t WHERE t.customer_pk = c.pk;
        RETURN NEXT;
    END
    $$
    """,
    """
    CREATE TABLE autumn_customers (
        pk text COLLATE "C" PRIMARY KEY,
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        id text UNIQUE,
        email_lower text,
        created_at timestamptz NOT NULL,
        next_due_at timestamptz,
        version bigint NOT NULL,
        head jsonb NOT NULL
    )
    """,
    "CREATE UNIQUE INDEX autumn_customers_idless_email ON autumn_customers (email_lower)"
    " WHERE id IS NULL",
    "CREATE INDEX autumn_customers_email ON autumn_customers (email_lower)",
    "CREATE INDEX autumn_customers_created ON autumn_customers (created_at, pk)",
    "CREATE INDEX autumn_customers_due ON autumn_customers (next_due_at)"
    " WHERE next_due_at IS NOT NULL",
    """
    CREATE TABLE autumn_customer_products (
        customer_pk text NOT NULL,
        id text NOT NULL,
        pos integer NOT NULL,
        product_id text NOT NULL,
        version integer NOT NULL,
        data jsonb NOT NULL,
        PRIMARY KEY (customer_pk, id)
    )
    """,
    "CREATE INDEX autumn_customer_products_version"
    " ON autumn_customer_products (product_id, version)",
    """
    CREATE TABLE autumn_balance_rows (
        customer_pk text NOT NULL,
        id text NOT NULL,
        pos integer NOT NULL,
        data jsonb NOT NULL,
        PRIMARY KEY (customer_pk, id)
    )
    """,
    """
    CREATE TABLE autumn_entities (
        customer_pk text NOT NULL,
        id text NOT NULL,
        pos integer NOT NULL,
        data jsonb NOT NULL,
        PRIMARY KEY (customer_pk, id)
    )
    """,
    """
    CREATE TABLE autumn_events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        customer_pk text NOT NULL,
        entity_id text,
        feature_id text,
        event_name text,
        value numeric NOT NULL,
        ts timestamptz NOT NULL,
        created_at timestamptz NOT NULL,
        data jsonb NOT NULL
    )
    """,
    "CREATE INDEX autumn_events_customer ON autumn_events (customer_pk, seq)",
    """
    CREATE TABLE autumn_idempotency (
        operation text NOT NULL,
        customer_pk text NOT NULL,
        key text NOT NULL,
        created_at timestamptz NOT NULL,
        data jsonb NOT NULL,
        PRIMARY KEY (operation, customer_pk, key)
    )
    """,
    "CREATE INDEX autumn_idempotency_customer ON autumn_idempotency (customer_pk)",
    """
    CREATE TABLE autumn_trial_subject_claims (
        product_id text NOT NULL,
        customer_pk text NOT NULL,
        entity_key text NOT NULL,
        PRIMARY KEY (product_id, customer_pk, entity_key)
    )
    """,
    "CREATE INDEX autumn_trial_subject_claims_customer"
    " ON autumn_trial_subject_claims (customer_pk)",
    """
    CREATE TABLE autumn_trial_fingerprint_claims (
        product_id text NOT NULL,
        fingerprint text NOT NULL,
        PRIMARY KEY (product_id, fingerprint)
    )
    """,
    """
    CREATE TABLE autumn_renewal_markers (
        cp_instance_id text NOT NULL,
        period_start timestamptz NOT NULL,
        PRIMARY KEY (cp_instance_id, period_start)
    )
    """,
    "CREATE TABLE autumn_gateway_events (event_id text PRIMARY KEY)",
    """
    CREATE TABLE autumn_invoices (
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        id text PRIMARY KEY,
        customer_pk text NOT NULL,
        gateway_invoice_id text,
        status text NOT NULL,
        total numeric NOT NULL,
        currency text NOT NULL,
        created_at timestamptz NOT NULL,
        data jsonb NOT NULL
    )
    """,
    "CREATE INDEX autumn_invoices_customer ON autumn_invoices (customer_pk, seq)",
    "CREATE INDEX autumn_invoices_gateway ON autumn_invoices (gateway_invoice_id, seq)"
    " WHERE gateway_invoice_id IS NOT NULL",
    """
    CREATE TABLE autumn_pending (
        key text COLLATE "C" PRIMARY KEY,
        customer_pk text NOT NULL,
        kind text NOT NULL,
        created_at timestamptz NOT NULL,
        data jsonb NOT NULL
    )
    """,
    "CREATE INDEX autumn_pending_kind ON autumn_pending (kind, key)",
    """
    CREATE TABLE autumn_product_versions (
        product_id text NOT NULL,
        version integer NOT NULL,
        created_at timestamptz NOT NULL,
        data jsonb NOT NULL,
        PRIMARY KEY (product_id, version)
    )
    """,
)

#: Version 3: a customer's head is TOASTed with lz4, not pglz. A head grows with what the
#: customer has open (a few hundred bytes per open lock), and every reservation, settlement and
#: usage-window count rewrites it: beside 100 open locks (a ~35 KB head) lz4 made a
#: reservation + finalize and a usage-limited track 16% cheaper (benchmarks/README.md).
#: Only values written from now on are compressed so (no rewrite, a brief lock on the table);
#: readers, including processes of the previous release, read both. A server built without lz4
#: (or older than 14) keeps pglz.
V3: tuple[str, ...] = (
    """
    DO $$
    BEGIN
        IF current_setting('server_version_num')::int >= 140000 THEN
            EXECUTE 'ALTER TABLE autumn_customers ALTER COLUMN head SET COMPRESSION lz4';
        END IF;
    EXCEPTION WHEN feature_not_supported THEN
        NULL;
    END
    $$
    """,
)

#: ``MIGRATIONS[i]`` takes a database from version ``i`` to ``i + 1``.
MIGRATIONS: list[tuple[str, ...]] = [V1, OUTBOX_V2, V3]


def current_version() -> int:
    """The schema version this code writes (read at call time, so tests can add a step)."""
    return len(MIGRATIONS)


__all__ = [
    "CREATE_MIGRATIONS_TABLE",
    "MIGRATIONS",
    "MIGRATIONS_TABLE",
    "MIGRATION_LOCK_KEY",
    "OUTBOX_V2",
    "V1",
    "V3",
    "current_version",
]
