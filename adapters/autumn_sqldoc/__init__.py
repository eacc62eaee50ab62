"""autumn_sqldoc: the document mapping the SQL stores share (SQLite and PostgreSQL).

Both stores keep a customer as a head document plus one document per child record (products,
balance rows, entities) and both parse a customer once per committed version. What they share
lives here, once; each store keeps only its dialect, its connections and its locking:

- ``codec``: the converter and the JSON text of every document;
- ``mapping``: the child tables, the head document, how a ``CustomerChange`` becomes rows, and
  how rows become a ``CustomerState`` again;
- ``cache``: the bounded cache of parsed customers, published only after a commit.

The change itself (what differs between two states, the due time, the customer order, the
idempotency lifetime) is decided by the core (``autumn_core.changes``); this package only maps.
No other adapter imports it but the SQL stores (``tests/architecture``).
"""
