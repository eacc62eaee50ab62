"""EN2 as a property, on every store: whatever entities are created and deleted and whatever
plans granting them are attached, canceled, switched or granted, the customer-level usage of
``users`` equals the number of live entities (no ``balances.set`` intervenes)."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autumn_core import AutumnError, GatewayError, ManualClock, StoreError
from tests.seats.conftest import T0, Make
from tests.seats.test_entities_are_seats import catalog

PLANS = ["pro", "team", "small", "pro-trial", "more", "extra", "chat", "free"]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, 7)),
        st.tuples(st.just("delete"), st.integers(0, 7)),
        st.tuples(st.just("attach"), st.sampled_from(PLANS)),
        st.tuples(st.just("cancel"), st.sampled_from(PLANS), st.booleans()),
        st.tuples(st.just("grant"), st.integers(1, 4)),
        st.tuples(st.just("wait"), st.integers(1, 40)),
    ),
    min_size=1,
    max_size=14,
)


def run(billing: Any, clock: ManualClock, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "create":
        billing.entities.create("c", f"u{step[1]}", "users")
    elif kind == "delete":
        billing.entities.delete("c", f"u{step[1]}")
    elif kind == "attach":
        billing.attach("c", step[1])
    elif kind == "cancel":
        billing.cancel("c", step[1], immediately=step[2])
    elif kind == "grant":
        billing.balances.grant("c", "users", step[1])
    else:
        clock.advance(days=step[1])
        billing.process_due()


@settings(
    max_examples=int(os.environ.get("SEATS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
def test_usage_of_users_is_the_number_of_live_entities(
    make: Make, plan: list[tuple[Any, ...]]
) -> None:
    clock = ManualClock(T0)
    billing = make(catalog(default=True), clock=clock)
    billing.customers.create("c")
    for step in plan:
        try:
            run(billing, clock, step)
        except (StoreError, GatewayError):
            raise
        except AutumnError:
            pass  # refused (unknown entity, at the limit, nothing to cancel): nothing changed
        customer = billing.customers.get("c")
        live = Decimal(len(customer.entities))
        users = customer.features.get("users")
        if users is not None:  # no row of users: nothing records usage
            assert (step, users.usage) == (step, live)
