"""Locks and usage limits on a feature that draws on a credit system (BC3, BC5, BC7),
on every store. ``images`` cost 2 credits; the free product grants 100 credits a month."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from autumn_core import Autumn, ManualClock
from tests.conftest import T0


def credits(billing: Autumn) -> tuple[Decimal, Decimal]:
    b = billing.customers.get("u1").features["credits"]
    return Decimal(b.remaining), Decimal(b.held)


def test_bc5_a_hold_of_credits_and_its_settlement(billing: Autumn) -> None:
    billing.customers.create("u1")
    r = billing.check("u1", "images", required_balance=10, lock={"lock_id": "a"})
    assert r.allowed and credits(billing) == (Decimal(80), Decimal(20))
    assert not billing.check("u1", "images", required_balance=41).allowed
    billing.balances.finalize("a", "confirm", override_value="2.5")
    assert credits(billing) == (Decimal(95), Decimal(0))
    billing.check("u1", "images", required_balance=10, lock={"lock_id": "b"})
    billing.balances.finalize("b", "release")
    assert credits(billing) == (Decimal(95), Decimal(0))


def test_bc3_a_credit_limit_caps_the_features_that_draw_on_it(billing: Autumn) -> None:
    billing.customers.create(
        "u1",
        billing_controls={
            "usage_limits": [{"feature_id": "credits", "limit": 30, "interval": "day"}]
        },
    )
    assert billing.track("u1", "images", value=20).applied["credits"] == Decimal(30)
    assert not billing.check("u1", "images").allowed
    assert credits(billing) == (Decimal(70), Decimal(0))


def test_bc7_holds_of_credits_taken_before_a_reset(billing: Autumn, clock: ManualClock) -> None:
    # Given two holds of 10 images (20 credits each) an hour before the monthly reset
    billing.customers.create("u1")
    clock.set(T0 + timedelta(days=31, hours=-1))
    billing.check("u1", "images", required_balance=10, lock={"lock_id": "a"})
    billing.check("u1", "images", required_balance=10, lock={"lock_id": "b"})
    assert credits(billing) == (Decimal(60), Decimal(40))
    # When the reset has refilled the credits to 100
    clock.set(T0 + timedelta(days=31, minutes=1))
    assert credits(billing) == (Decimal(100), Decimal(0))
    # Then a confirm below its hold costs the new period nothing
    billing.balances.finalize("a", "confirm", override_value=4)
    assert credits(billing) == (Decimal(100), Decimal(0))
    # and one above it costs only the 3 images beyond the hold (6 credits)
    billing.balances.finalize("b", "confirm", override_value=13)
    assert credits(billing) == (Decimal(94), Decimal(0))
    assert sorted(e.value for e in billing.events.list("u1")) == [Decimal(4), Decimal(13)]
