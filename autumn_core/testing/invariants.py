"""The engine's invariants, checked on what the store holds (not on derived views).

Each check returns a list of problems in plain words (empty when the invariant holds), so a
machine can report all of them with the calls that led there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from autumn_core.catalog import Catalog
from autumn_core.facade import Autumn
from autumn_core.model import CustomerState, InvoiceRecord, ProductState, RowState
from autumn_core.results import Customer

ZERO = Decimal(0)
CENT = Decimal("0.01")


@attrs.frozen
class Trial:
    """One product instance that was granted a trial (from the stored history)."""

    instance_id: str
    product_id: str
    customer_pk: str
    customer_id: str | None
    entity_id: str | None
    #: The customer's fingerprint when the machine first saw this trial.
    fingerprint: str | None
    started_at: datetime | None
    ends_at: datetime


@attrs.frozen
class World:
    """Everything the store holds about customers, read in one transaction."""

    customers: tuple[CustomerState, ...]
    invoices: Mapping[str, tuple[InvoiceRecord, ...]]
    events: Mapping[str, int]

    def by_id(self, customer_id: str) -> CustomerState | None:
        for state in self.customers:
            if state.id == customer_id:
                return state
        return None


def read_world(billing: Autumn) -> World:
    def body(tx: Any) -> World:
        states = tuple(tx.list_customers(limit=1000, starting_after=None, email=None))
        invoices = {s.pk: tuple(tx.list_invoices(s.pk)) for s in states}
        events = {s.pk: _count_events(tx, s.pk) for s in states}
        return World(states, invoices, events)

    return billing._ctx.run(body, write=False)


def read_subject(billing: Autumn, ref: Any) -> Any:
    """The stored state of one customer (by id or ``ByEmail``), its invoices and events."""

    def body(tx: Any) -> Any:
        if isinstance(ref, str):
            pk = tx.customer_pk(ref)
            states = [tx.load_customer(pk)] if pk else []
        else:
            states = tx.customers_by_email(ref.email)
        return [(s, tuple(tx.list_invoices(s.pk)), _event_ids(tx, s.pk)) for s in states if s]

    return billing._ctx.run(body, write=False)


def _event_ids(tx: Any, pk: str) -> tuple[str, ...]:
    ids: list[str] = []
    after = None
    while True:
        page = tx.list_events(
            pk, feature_id=None, start=None, end=None, limit=1000, starting_after=after
        )
        ids += [e.id for e in page]
        if len(page) < 1000:
            return tuple(ids)
        after = page[-1].id


def _count_events(tx: Any, pk: str) -> int:
    return len(_event_ids(tx, pk))


def is_trial(p: ProductState) -> bool:
    return p.trial_ends_at is not None and p.status != "scheduled"


def trial_problems(catalog: Catalog, trials: Iterable[Trial]) -> list[str]:
    """At most one trial per product per subject, and per fingerprint where the product says so."""
    problems: list[str] = []
    by_subject: dict[tuple[str, str, str | None], list[Trial]] = {}
    by_fingerprint: dict[tuple[str, str], list[Trial]] = {}
    for t in trials:
        by_subject.setdefault((t.product_id, t.customer_pk, t.entity_id), []).append(t)
        product = catalog.product(t.product_id)
        unique = product is not None and product.free_trial is not None
        if unique and product is not None and product.free_trial is not None:
            unique = product.free_trial.unique_fingerprint
        if unique and t.fingerprint is not None:
            by_fingerprint.setdefault((t.product_id, t.fingerprint), []).append(t)
    for (product_id, _, entity_id), ts in by_subject.items():
        if len(ts) > 1:
            who = _who(ts[0]) + (f" (entity {entity_id!r})" if entity_id else "")
            problems.append(f"{who} got {len(ts)} trials of {product_id!r}; at most one")
    for (product_id, fp), ts in by_fingerprint.items():
        if len(ts) > 1:
            problems.append(
                f"fingerprint {fp!r} got {len(ts)} trials of {product_id!r} "
                f"({', '.join(_who(t) for t in ts)}); the product allows one per fingerprint"
            )
    return problems


def _who(t: Trial) -> str:
    return f"customer {t.customer_id!r}" if t.customer_id else f"customer pk {t.customer_pk}"


def _name(state: CustomerState) -> str:
    return repr(state.id) if state.id is not None else f"<pre-created {state.email}>"


def row_floor(row: RowState) -> Decimal | None:
    """The lowest balance a deduction may leave on a row (R8); None when unbounded."""
    if row.unlimited:
        return None
    if row.billing == "usage":
        return None if row.max_purchase is None else -row.max_purchase
    if row.allocated and row.billing is None:
        return None  # free allocated rows may go negative (D11)
    return ZERO


def row_problems(state: CustomerState, loose: set[str]) -> list[str]:
    """Every row within its floor and its ceiling (``granted``), except rows in ``loose``
    (put outside their bounds on purpose by a balance edit or an allocated carry)."""
    problems: list[str] = []
    live = {p.instance_id for p in state.products if p.is_live}
    for row in state.rows:
        if row.id in loose or row.unlimited:
            continue
        if row.cp_id is not None and row.cp_id not in live:
            continue
        where = f"customer {_name(state)}, {row.feature_id} row of {row.product_id or 'a grant'}"
        if row.balance > row.granted:
            problems.append(f"{where}: balance {row.balance} above granted {row.granted}")
        floor = row_floor(row)
        if floor is not None and row.balance < floor:
            problems.append(f"{where}: balance {row.balance} below its floor {floor}")
        for ro in row.rollovers:
            if ro.balance < 0 or ro.balance > ro.amount:
                problems.append(f"{where}: rollover {ro.balance} outside [0, {ro.amount}]")
    return problems


def invoice_problems(state: CustomerState, invoices: Iterable[InvoiceRecord]) -> list[str]:
    """Every invoice's total is the sum of its lines, each rounded to the cent (P11)."""
    problems: list[str] = []
    for inv in invoices:
        total = sum((line.amount for line in inv.lines), ZERO)
        if total != inv.total:
            problems.append(
                f"customer {_name(state)}: invoice {inv.id} totals {inv.total}, its lines sum"
                f" to {total}"
            )
        for line in inv.lines:
            if line.amount != line.amount.quantize(CENT):
                problems.append(
                    f"customer {_name(state)}: invoice line {line.description!r} is"
                    f" {line.amount}, not rounded to the cent"
                )
    return problems


def feature_total(state: CustomerState, feature_id: str) -> tuple[Decimal, Decimal, bool]:
    """(Σ balances + Σ rollover balances, Σ granted + Σ rollover amounts, any unlimited) over the
    customer's live rows of one feature (entity rows included: the customer's view)."""
    live = {p.instance_id for p in state.products if p.is_live}
    total = granted = ZERO
    unlimited = False
    for row in state.rows:
        if row.feature_id != feature_id or (row.cp_id is not None and row.cp_id not in live):
            continue
        unlimited = unlimited or row.unlimited
        total += row.balance + sum((r.balance for r in row.rollovers), ZERO)
        granted += row.granted + sum((r.amount for r in row.rollovers), ZERO)
    return total, granted, unlimited


def view_total(customer: Customer | None, feature_id: str) -> tuple[Decimal, Decimal, bool] | None:
    """(Σ balances + Σ rollover balances, granted, unlimited) of one feature in a customer's
    view (entity rows included), or None when the customer has no row of it."""
    balance = customer.features.get(feature_id) if customer is not None else None
    if balance is None:
        return None
    return balance.granted - balance.usage, balance.granted, balance.unlimited
