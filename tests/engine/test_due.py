"""When a customer next has lazy work due (``rules.due.next_due_at``): every instant it weighs.

A due instant too late skips a reset, a renewal or an expiry; one too early only costs a
wasted look. Each test puts the instant it is about beside a later one, so the answer names
which candidate the rule took.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from autumn_core.model import CustomerState, ProductState, RowState
from autumn_core.rules.due import next_due_at
from tests.engine.helpers import T0, roll, row

DAY = timedelta(days=1)
LATE = T0 + 300 * DAY


def state(
    *, rows: tuple[RowState, ...] = (), products: tuple[ProductState, ...] = ()
) -> CustomerState:
    return CustomerState(pk="cus_pk", id="cus", created_at=T0, rows=rows, products=products)


def product(status: str = "active", **instants: datetime | None) -> ProductState:
    return ProductState(
        instance_id=f"cp_{status}",
        product_id="pro",
        version=1,
        status=status,
        created_at=T0,
        **instants,  # type: ignore[arg-type]
    )


def test_nothing_scheduled_is_never_due() -> None:
    """Given a customer with a row that neither resets nor expires and no product, then
    nothing is ever due."""
    assert next_due_at(state(rows=(row(granted=5),))) is None


def test_a_row_is_due_at_its_own_reset_unless_it_renews_with_its_product() -> None:
    """Given a monthly row (next reset 28 Feb), when it resets by itself, then the customer is
    due at that reset; when it renews with its product, then only the product's period end
    (1 Mar) makes it due."""
    monthly = row(granted=5, reset="month")
    assert monthly.next_reset_at == T0.replace(month=2, day=28)
    assert next_due_at(state(rows=(monthly,))) == monthly.next_reset_at
    renewing = attrs.evolve(monthly, renews_with_product=True)
    period_end = T0 + 29 * DAY
    assert next_due_at(state(rows=(renewing,))) is None
    assert (
        next_due_at(state(rows=(renewing,), products=(product(current_period_end=period_end),)))
        == period_end
    )


def test_a_row_is_due_when_it_or_one_of_its_rollovers_expires() -> None:
    """Given a grant expiring in 3 days and a row whose second rollover expires in 2 days (the
    first in 5), then each is due at its earliest expiry."""
    grant = row(granted=5, grant=True, expires_at=T0 + 3 * DAY)
    rolled = row(
        granted=5, rollovers=(roll(2, expires_at=T0 + 5 * DAY), roll(1, expires_at=T0 + 2 * DAY))
    )
    assert next_due_at(state(rows=(grant,))) == T0 + 3 * DAY
    assert next_due_at(state(rows=(rolled,))) == T0 + 2 * DAY
    assert next_due_at(state(rows=(grant, rolled))) == T0 + 2 * DAY


def test_an_active_product_is_due_at_its_period_end_or_its_cancellation() -> None:
    """Given an active product whose period ends in 30 days, then it is due then; when it is
    canceled to end in 10 days, then it is due at that end."""
    running = product(current_period_start=T0, current_period_end=T0 + 30 * DAY)
    assert next_due_at(state(products=(running,))) == T0 + 30 * DAY
    canceled = attrs.evolve(running, ends_at=T0 + 10 * DAY)
    assert next_due_at(state(products=(canceled,))) == T0 + 10 * DAY


def test_an_expired_product_is_never_due() -> None:
    """Given an expired product whose period, trial and end are all past, then nothing is due
    (it would otherwise be due at once, for ever)."""
    expired = product(
        "expired",
        current_period_start=T0 - 40 * DAY,
        current_period_end=T0 - 10 * DAY,
        trial_ends_at=T0 - 20 * DAY,
        ends_at=T0 - 10 * DAY,
    )
    assert next_due_at(state(products=(expired,))) is None


def test_a_scheduled_product_is_due_only_when_it_starts() -> None:
    """Given a product scheduled to start in 20 days (with the period it will run), then it is
    due at its start, and the products after it still count (an active one ending in 30 days,
    one canceled to end in 25)."""
    scheduled = product(
        "scheduled",
        started_at=T0 + 20 * DAY,
        current_period_start=T0 + 20 * DAY,
        current_period_end=T0 + 5 * DAY,
        ends_at=T0 + DAY,
    )
    assert next_due_at(state(products=(scheduled,))) == T0 + 20 * DAY
    later = product(current_period_end=T0 + 30 * DAY)
    ending = product(current_period_end=LATE, ends_at=T0 + 25 * DAY)
    assert next_due_at(state(products=(scheduled, later))) == T0 + 20 * DAY
    soon = product(current_period_end=T0 + 3 * DAY)
    assert next_due_at(state(products=(scheduled, soon))) == T0 + 3 * DAY
    assert next_due_at(state(products=(scheduled, ending))) == T0 + 20 * DAY
    assert (
        next_due_at(state(products=(scheduled, attrs.evolve(ending, ends_at=T0 + 2 * DAY))))
        == T0 + 2 * DAY
    )


def test_a_running_trial_is_due_at_its_end_a_converted_one_no_longer() -> None:
    """Given a trial ending in 7 days inside a period ending in 30, then it is due at the
    trial's end; given the trial converted (the period now starts where the trial ended), then
    the kept trial_ends_at is history and only the period end is due."""
    trial_end = T0 + 7 * DAY
    running = product(
        current_period_start=T0, current_period_end=T0 + 30 * DAY, trial_ends_at=trial_end
    )
    assert next_due_at(state(products=(running,))) == trial_end
    unstarted = attrs.evolve(running, current_period_start=None)
    assert next_due_at(state(products=(unstarted,))) == trial_end
    converted = attrs.evolve(
        running, current_period_start=trial_end, current_period_end=trial_end + 30 * DAY
    )
    assert next_due_at(state(products=(converted,))) == trial_end + 30 * DAY
