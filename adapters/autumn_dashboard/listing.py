"""The Customers page's rows: cursor pages in the store's customer order, and search.

The table shows a customer's name, id, email, products (name and status) and creation time:
all of it is in the stored record, so a page reads the records of one page through the ``Store``
port in one read transaction and never builds the full customer view (balances, entities) that
``customers.list`` returns. A customer with lazy work due (a trial or a cancellation that ended
since its last write) is shown through ``customers.get``, which applies that work, so its status
is the one the API reports. A page cursor is the store key of the last customer shown.

Search (a case-insensitive substring of id, name or email) is not a store query: it walks the
same order, reading batches that start at the page size (a common term fills its page from the
first batch) and grow towards ``_SCAN_BATCH``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime

import attrs

from autumn_core import Autumn, ByEmail, Customer, InvalidRequest
from autumn_core.model import CustomerState

PAGE_SIZES = (50, 100, 250)
_SCAN_BATCH = 1000
#: Stored customers one search request reads at most: kept well under the SQLite store's parsed-state
#: cache (10,000), which a longer walk would flush, slowing the scan tenfold and the hot paths too.
SCAN_BUDGET = 5_000


@attrs.frozen
class Holding:
    name: str
    #: As the table shows it: active, trialing, canceling, past due, scheduled.
    status: str


@attrs.frozen
class Row:
    """One line of the Customers table."""

    id: str | None
    name: str | None
    email: str | None
    created_at: datetime
    products: tuple[Holding, ...]


@attrs.frozen
class Page:
    customers: list[Row]
    #: The cursor of the next page, None on the last one.
    next_cursor: str | None
    #: A search that stopped at its scan budget before filling the page: ``next_cursor``
    #: continues the scan from there.
    partial: bool = False
    scanned: int = 0


def encode(value: object) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> object:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidRequest(f"not a page cursor: {cursor!r}") from None


def _pk(cursor: str | None) -> str | None:
    if not cursor:
        return None
    value = decode(cursor)
    if not isinstance(value, str):
        raise InvalidRequest(f"not a page cursor: {cursor!r}")
    return value


def ref_of(customer: Customer | CustomerState | Row) -> str | ByEmail:
    """How the facade addresses a customer: its id, else its email (a pre-created customer)."""
    if customer.id is not None:
        return customer.id
    assert customer.email is not None  # a customer without an id always has an email (C1)
    return ByEmail(customer.email)


def display_status(status: str, canceled: bool) -> str:
    """The status shown: a live product with a cancellation pending is "canceling"."""
    if canceled and status in ("active", "trialing", "past_due"):
        return "canceling"
    return status.replace("_", " ")


class _Rows:
    """Table rows from stored records; the catalog's names, the clock's now."""

    def __init__(self, billing: Autumn) -> None:
        self.billing = billing
        self.names = {p.id: p.name or p.id for p in billing.catalog.products}
        self.now = billing.clock.now()

    def of(self, states: list[CustomerState]) -> list[Row]:
        now, names = self.now, self.names
        rows: list[Row] = []
        for s in states:
            if s.due_at is not None and s.due_at <= now:
                rows.append(self.of_view(self.billing.customers.get(ref_of(s))))
                continue
            rows.append(
                Row(
                    s.id,
                    s.name,
                    s.email,
                    s.created_at,
                    tuple(
                        Holding(
                            names.get(p.product_id, p.product_id),
                            display_status(p.public_status(now), p.canceled_at is not None),
                        )
                        for p in s.products
                        if p.entity_id is None and p.status != "expired"
                    ),
                )
            )
        return rows

    def of_view(self, c: Customer) -> Row:
        return Row(
            c.id,
            c.name,
            c.email,
            c.created_at,
            tuple(
                Holding(p.name or p.id, display_status(p.status, p.canceled_at is not None))
                for p in c.products
            ),
        )


def list_page(billing: Autumn, size: int, cursor: str | None) -> Page:
    after = _pk(cursor)
    with billing.store.transaction(write=False) as tx:
        states = tx.list_customers(limit=size + 1, starting_after=after, email=None)
    shown = states[:size]
    more = len(states) > size
    return Page(_Rows(billing).of(shown), encode(shown[-1].pk) if more else None)


def _states(
    billing: Autumn, after_pk: str | None, first: int = _SCAN_BATCH
) -> Iterator[CustomerState]:
    """Every stored customer in the store's order, one read transaction per batch; batches
    start at ``first`` and double up to ``_SCAN_BATCH``."""
    batch_size = min(first, _SCAN_BATCH)
    while True:
        with billing.store.transaction(write=False) as tx:
            batch = tx.list_customers(limit=batch_size, starting_after=after_pk, email=None)
        yield from batch
        if len(batch) < batch_size:
            return
        after_pk = batch[-1].pk
        batch_size = min(batch_size * 2, _SCAN_BATCH)


def matcher(text: str) -> Callable[[CustomerState], bool]:
    needle = text.casefold()

    def match(s: CustomerState) -> bool:
        return any(v is not None and needle in v.casefold() for v in (s.id, s.name, s.email))

    return match


def search_page(
    billing: Autumn, text: str, size: int, cursor: str | None, *, budget: int = SCAN_BUDGET
) -> Page:
    """Up to ``size`` matches after the cursor, scanning at most ``budget`` stored customers
    (so one request stays bounded on a large store; the page then offers to continue)."""
    after_pk = _pk(cursor)
    match = matcher(text)
    found: list[CustomerState] = []
    scanned = 0
    last_pk = None
    for state in _states(billing, after_pk, first=size + 1):
        scanned += 1
        last_pk = state.pk
        if match(state):
            found.append(state)
            if len(found) > size:
                break
        if scanned >= budget and len(found) <= size:
            return Page(_Rows(billing).of(found), encode(last_pk), partial=True, scanned=scanned)
    more = len(found) > size
    found = found[:size]
    cursor_out = encode(found[-1].pk) if more and found else None
    return Page(_Rows(billing).of(found), cursor_out, scanned=scanned)


def product_counts(billing: Autumn) -> Counter[str]:
    """How many customers hold each product (live or scheduled, on the customer or an entity)."""
    counts: Counter[str] = Counter()
    for state in _states(billing, None):
        held = {p.product_id for p in state.products if p.status != "expired"}
        counts.update(held)
    return counts


def count_customers(billing: Autumn) -> int:
    return sum(1 for _ in _states(billing, None))


def granted_free(billing: Autumn, customer: Customer) -> set[tuple[str, str | None]]:
    """(product id, entity id) of the priced products this customer holds granted for free.

    The customer view does not say how a product was attached; the stored record does.
    """
    priced = {p.id for p in billing.catalog.products if not p.is_free}
    with billing.store.transaction(write=False) as tx:
        if customer.id is not None:
            pk = tx.customer_pk(customer.id)
        else:
            pending = [s for s in tx.customers_by_email(customer.email or "") if s.id is None]
            pk = pending[0].pk if pending else None
        state = tx.load_customer(pk) if pk is not None else None
    if state is None:
        return set()
    return {
        (p.product_id, p.entity_id)
        for p in state.products
        if p.free and p.product_id in priced and p.status != "expired"
    }
