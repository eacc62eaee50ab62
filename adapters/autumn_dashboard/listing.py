"""The Customers page's rows: cursor pages in the library's order, and search.

The facade pages by customer id (``customers.list(starting_after=id)``), but a pre-created
customer has no id yet. A page cursor is therefore the last customer *with* an id at or before
the page end (the anchor) plus how many id-less customers follow it on the pages already shown.

Search (a case-insensitive substring of id, name or email) is not a store query, so it walks the
store's own customer order through the ``Store`` port, reading the stored records only, and
builds the full customer view just for the rows it shows. Its cursor is the store key of the
last match.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Callable, Iterator

import attrs

from autumn_core import Autumn, ByEmail, Customer, InvalidRequest
from autumn_core.model import CustomerState

PAGE_SIZES = (50, 100, 250)
#: The facade's largest page.
_MAX_LIST = 1000
_SCAN_BATCH = 1000
#: Stored customers one search request reads at most: kept well under the SQLite store's parsed-state
#: cache (10,000), which a longer walk would flush, slowing the scan tenfold and the hot paths too.
SCAN_BUDGET = 5_000


@attrs.frozen
class Page:
    customers: list[Customer]
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


def ref_of(customer: Customer | CustomerState) -> str | ByEmail:
    """How the facade addresses a customer: its id, else its email (a pre-created customer)."""
    if customer.id is not None:
        return customer.id
    assert customer.email is not None  # a customer without an id always has an email (C1)
    return ByEmail(customer.email)


def list_page(billing: Autumn, size: int, cursor: str | None) -> Page:
    anchor: str | None = None
    skip = 0
    if cursor:
        value = decode(cursor)
        if not (
            isinstance(value, list)
            and len(value) == 2
            and (value[0] is None or isinstance(value[0], str))
            and isinstance(value[1], int)
            and value[1] >= 0
        ):
            raise InvalidRequest(f"not a page cursor: {cursor!r}")
        anchor, skip = value[0], value[1]
    rows: list[Customer] = []
    want = skip + size + 1
    after = anchor
    while True:
        need = min(want - len(rows), _MAX_LIST)
        batch = billing.customers.list(limit=need, starting_after=after)
        rows.extend(batch)
        # A batch ending on id-less customers cannot be continued by id; that takes more than
        # a thousand of them in a row, and then the listing ends there.
        if len(rows) >= want or len(batch) < need or batch[-1].id is None:
            break
        after = batch[-1].id
    shown = rows[skip : skip + size]
    if len(rows) <= skip + size:
        return Page(shown, None)
    # The anchor of the next page: the last shown customer with an id, with the id-less rows
    # after it counted.
    new_anchor, new_skip = anchor, skip + size
    for i, c in enumerate(shown):
        if c.id is not None:
            new_anchor, new_skip = c.id, len(shown) - 1 - i
    return Page(shown, encode([new_anchor, new_skip]))


def _states(billing: Autumn, after_pk: str | None) -> Iterator[CustomerState]:
    """Every stored customer in the store's order, one read transaction per batch."""
    while True:
        with billing.store.transaction(write=False) as tx:
            batch = tx.list_customers(limit=_SCAN_BATCH, starting_after=after_pk, email=None)
        yield from batch
        if len(batch) < _SCAN_BATCH:
            return
        after_pk = batch[-1].pk


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
    after_pk = None
    if cursor:
        value = decode(cursor)
        if not isinstance(value, str):
            raise InvalidRequest(f"not a page cursor: {cursor!r}")
        after_pk = value
    match = matcher(text)
    found: list[CustomerState] = []
    scanned = 0
    last_pk = None
    for state in _states(billing, after_pk):
        scanned += 1
        last_pk = state.pk
        if match(state):
            found.append(state)
            if len(found) > size:
                break
        if scanned >= budget and len(found) <= size:
            customers = [billing.customers.get(ref_of(s)) for s in found]
            return Page(customers, encode(last_pk), partial=True, scanned=scanned)
    more = len(found) > size
    found = found[:size]
    customers = [billing.customers.get(ref_of(s)) for s in found]
    cursor_out = encode(found[-1].pk) if more and found else None
    return Page(customers, cursor_out, scanned=scanned)


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
