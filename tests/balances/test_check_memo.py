"""Check reuses the views it derived from a stored customer until the customer is saved again
or one of its rows or rollovers expires (``app.views.memoized``); these tests pin the edges."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from autumn_core import Autumn, ManualClock
from autumn_core.app.views import memoized
from autumn_core.model import CustomerState, RowState

from .conftest import T0


def stored(billing: Autumn, customer_id: str) -> CustomerState:
    with billing.store.transaction(write=False) as tx:
        pk = tx.customer_pk(customer_id)
        assert pk is not None
        state = tx.load_customer(pk, for_update=False)
    assert state is not None
    return state


def test_a_memoized_check_still_drops_a_grant_at_its_expiry(
    billing: Autumn, clock: ManualClock
) -> None:
    """Given a permanent grant of 10 and one of 5 expiring in 3 days, checked once (memoized),
    when the clock passes the expiry with no save in between, then the next check sees 10."""
    billing.balances.grant("c", "messages", 10)
    billing.balances.grant("c", "messages", 5, expires_at=T0 + timedelta(days=3))
    before = billing.check("c", "messages", required_balance=12)
    assert (before.allowed, before.balance and before.balance.remaining) == (True, D(15))

    clock.advance(days=3)
    after = billing.check("c", "messages", required_balance=12)

    assert after.allowed is False
    assert after.balance is not None
    assert (after.balance.granted, after.balance.remaining) == (D(10), D(10))
    assert len(after.balance.breakdown) == 1


def test_a_check_just_before_the_expiry_reuses_the_view_and_is_right(
    billing: Autumn, clock: ManualClock
) -> None:
    """Given the same grants, when checked at T0 and again one second before the expiry,
    then both see 15 and the second is served from the memo of the same stored state."""
    billing.balances.grant("c", "messages", 10)
    billing.balances.grant("c", "messages", 5, expires_at=T0 + timedelta(days=3))
    first = billing.check("c", "messages")
    state = stored(billing, "c")
    clock.advance(days=3, seconds=-1)

    second = billing.check("c", "messages")

    assert first.balance is not None and second.balance is not None
    assert first.balance.remaining == second.balance.remaining == D(15)
    assert stored(billing, "c") is state  # nothing was saved between the two checks
    assert any(key[1] == "check" for key in state.read_memo)


def test_a_track_between_two_checks_is_seen_by_the_second(billing: Autumn) -> None:
    """Given a check (memoized), when 4 are tracked, then the next check sees the new balance."""
    billing.balances.grant("c", "messages", 10)
    assert billing.check("c", "messages").balance.remaining == D(10)  # type: ignore[union-attr]

    billing.track("c", "messages", value=4)

    assert billing.check("c", "messages").balance.remaining == D(6)  # type: ignore[union-attr]


def test_changing_a_returned_balance_does_not_change_the_next_check(billing: Autumn) -> None:
    """Given a check whose Balance lists are changed by the caller, when checked again, then
    the second Balance is intact (each result gets its own lists)."""
    billing.balances.grant("c", "messages", 10)
    first = billing.check("c", "messages").balance
    assert first is not None
    first.breakdown.clear()
    first.rollovers.append(None)  # type: ignore[arg-type]

    second = billing.check("c", "messages").balance

    assert second is not None
    assert len(second.breakdown) == 1 and second.rollovers == []
    assert second == billing.customers.get("c").features["messages"]


def test_memoized_recomputes_outside_the_window_between_two_expiries() -> None:
    """Given a state whose rows expire at T0+1d and T0+3d, a view computed at T0+2d is reused
    from T0+1d up to (not at) T0+3d, and recomputed before T0+1d and from T0+3d on."""
    one, three = T0 + timedelta(days=1), T0 + timedelta(days=3)
    state = CustomerState(
        pk="p",
        id="c",
        created_at=T0,
        rows=(
            RowState("r1", "messages", T0, expires_at=one),
            RowState("r2", "messages", T0, expires_at=three),
        ),
    )
    calls: list[int] = []

    def view() -> int:
        calls.append(1)
        return len(calls)

    assert memoized(state, T0 + timedelta(days=2), "k", view) == 1
    assert memoized(state, one, "k", view) == 1
    assert memoized(state, three - timedelta(microseconds=1), "k", view) == 1
    assert memoized(state, three, "k", view) == 2
    assert memoized(state, three + timedelta(days=9), "k", view) == 2
    assert memoized(state, one - timedelta(microseconds=1), "k", view) == 3
