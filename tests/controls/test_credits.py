"""Locks and usage limits on a feature that draws on a credit system (BC3, BC5, BC7),
on every store. ``images`` cost 2 credits; the free product grants 100 credits a month."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from autumn_core import Autumn, Catalog, Feature, Item, ManualClock, Product
from tests.conftest import T0, StoreFactory


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


def _images_at(cost: int, included: int) -> Catalog:
    return Catalog(
        features=[
            Feature.metered("images"),
            Feature.credit_system("credits", costs={"images": cost}),
        ],
        products=[
            Product(
                "free",
                default=True,
                items=[Item.feature("credits", included=included, reset="month")],
            )
        ],
    )


def _credit_rows(billing: Autumn) -> list[Decimal]:
    with billing.store.transaction(write=False) as tx:
        pk = tx.customer_pk("u1")
        assert pk is not None
        state: Any = tx.load_customer(pk)
    return sorted(r.balance for r in state.rows if r.feature_id == "credits")


def test_bc7_a_credit_hold_over_two_rows_confirmed_below_is_exact(
    clock: ManualClock, new_store: StoreFactory
) -> None:
    # Given images at 3 credits, a plan row of 10 credits and a grant of 100
    billing = Autumn(_images_at(3, 10), store=new_store(), clock=clock)
    billing.customers.create("u1")
    billing.balances.grant("u1", "credits", 100)
    # and 10 images held (30 credits: the plan's 10, then 20 of the grant)
    assert billing.check("u1", "images", required_balance=10, lock={"lock_id": "a"}).allowed
    # When it is confirmed at 2 images
    billing.balances.finalize("a", "confirm", override_value=2)
    # Then the rows are as a track of 2 images leaves them, to the digit
    assert _credit_rows(billing) == [Decimal(4), Decimal(100)]
    assert str(billing.customers.get("u1").features["credits"].remaining) == "104"


def test_bc7_a_credit_hold_confirmed_after_a_price_change_is_charged_at_the_new_price(
    clock: ManualClock, new_store: StoreFactory
) -> None:
    # Given 10 images held at 2 credits each (20 credits)
    store = new_store()
    before = Autumn(_images_at(2, 100), store=store, clock=clock)
    before.customers.create("u1")
    before.check("u1", "images", required_balance=10, lock={"lock_id": "a"})
    # When the catalog is redeployed with images at 5 credits and the lock confirmed at 5
    after = Autumn(_images_at(5, 100), store=store, clock=clock)
    after.balances.finalize("a", "confirm", override_value=5)
    # Then the 5 images used cost what a track of them costs now: 25 credits
    assert after.customers.get("u1").features["credits"].remaining == Decimal(75)


def test_bc7_a_credit_hold_confirmed_below_after_a_reset_stays_counted_in_its_window(
    billing: Autumn, clock: ManualClock
) -> None:
    # Given a calendar-month usage limit on images and 10 images (20 credits) held an hour
    # before the credits' monthly reset
    _create_with_a_monthly_images_limit(billing)
    clock.set(T0 + timedelta(days=31, hours=-1))
    billing.check("u1", "images", required_balance=10, lock={"lock_id": "a"})
    # When it is confirmed at 4 after the reset, in the same calendar month
    clock.set(T0 + timedelta(days=31, minutes=1))
    billing.balances.finalize("a", "confirm", override_value=4)
    # Then the new period paid nothing, and the month's window counts the 4 used
    assert credits(billing) == (Decimal(100), Decimal(0))
    assert billing.customers.get("u1").limit_usage == {"images": Decimal(4)}


def _create_with_a_monthly_images_limit(billing: Autumn) -> None:
    billing.customers.create(
        "u1",
        billing_controls={
            "usage_limits": [
                {"feature_id": "images", "limit": 100, "interval": "month", "anchor": "utc"}
            ]
        },
    )


def test_bc7_a_credit_hold_over_a_reset_row_and_another_charges_and_counts_only_the_rest(
    billing: Autumn, clock: ManualClock
) -> None:
    # Given a calendar-month usage limit on images, the plan's 100 monthly credits (reset at
    # T0 + 31 days) down to 10, and a grant of 100 credits resetting ten days later
    _create_with_a_monthly_images_limit(billing)
    billing.track("u1", "images", value=45)  # 90 credits, in March's window
    clock.set(T0 + timedelta(days=10))
    billing.balances.grant("u1", "credits", 100, reset="month")
    # and 10 images held an hour before the plan's reset (April 10th): 10 credits of the
    # plan's row (5 images), then 10 of the grant (5 images)
    clock.set(T0 + timedelta(days=31, hours=-1))
    billing.check("u1", "images", required_balance=10, lock={"lock_id": "a"})
    assert credits(billing) == (Decimal(90), Decimal(20))
    assert billing.customers.get("u1").limit_usage == {"images": Decimal(10)}
    # When the plan's row has reset and the hold is confirmed at 8 images, in April still
    clock.set(T0 + timedelta(days=31, minutes=1))
    billing.balances.finalize("a", "confirm", override_value=8)
    # Then the 5 images of the old period were spent there; the new period pays for 3 (6
    # credits), the grant's 10 come back, and April's window counts the 8 used
    assert credits(billing) == (Decimal(194), Decimal(0))
    assert billing.customers.get("u1").limit_usage == {"images": Decimal(8)}
