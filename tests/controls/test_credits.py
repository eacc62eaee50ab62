"""Locks and usage limits on a feature that draws on a credit system (BC3, BC5, BC7),
on every store. ``images`` cost 2 credits; the free product grants 100 credits a month."""

from __future__ import annotations

from decimal import Decimal

from autumn_core import Autumn


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
