"""Property tests of the trial rules (T3, T4, T5) over random histories.

Over random sequences of customers (fingerprints shared, distinct or missing), attaches,
cancels and clock advances: no fingerprint and no customer ever receives a product's trial
twice, and a customer without a fingerprint is limited only by the per-customer rule.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autumn_core import (
    Catalog,
    CustomerData,
    Feature,
    FreeTrial,
    Item,
    Price,
    Product,
    ProductAlreadyAttached,
    ProductNotFound,
)
from autumn_core.testing import clock_of, engine, fingerprints, trials_granted

PRODUCTS = ("basic", "plus")


def catalog(unique: bool, card_required: bool) -> Catalog:
    return Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product(
                pid,
                price=Price(10 * (i + 1)),
                free_trial=FreeTrial(3, unique_fingerprint=unique, card_required=card_required),
                items=[Item.feature("messages", included=10 * (i + 1), reset="month")],
            )
            for i, pid in enumerate(PRODUCTS)
        ],
    )


customers = st.lists(fingerprints(pool=2), min_size=1, max_size=4)
steps = st.lists(
    st.tuples(
        st.sampled_from(["attach", "cancel", "cancel_now", "advance"]),
        st.integers(0, 3),
        st.sampled_from(PRODUCTS),
        st.integers(1, 5),
    ),
    max_size=12,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fps=customers, history=steps, unique=st.booleans(), card_required=st.booleans())
def test_t3_t4_never_two_trials_per_customer_or_fingerprint(
    fps: list[str | None],
    history: list[tuple[str, int, str, int]],
    unique: bool,
    card_required: bool,
) -> None:
    # given customers with (possibly shared, possibly missing) fingerprints
    billing = engine(catalog(unique, card_required))
    ids = [f"c{i}" for i in range(len(fps))]
    for cid, fp in zip(ids, fps, strict=True):
        billing.customers.create(cid, fingerprint=fp)
    # when a random history of attaches, cancels and clock advances runs
    for action, who, product, days in history:
        cid = ids[who % len(ids)]
        try:
            if action == "attach":
                billing.attach(cid, product)
            elif action == "cancel":
                billing.cancel(cid, product)
            elif action == "cancel_now":
                billing.cancel(cid, product, immediately=True)
            else:
                clock_of(billing).advance(days=days)
        except (ProductAlreadyAttached, ProductNotFound):
            pass  # the domain's expected refusals (D8, X1)
    # then each customer trialed each product at most once (T3) ...
    for pid in PRODUCTS:
        for cid in ids:
            assert trials_granted(billing, [cid], pid) <= 1
        # ... and with unique_fingerprint, each fingerprint at most once (T4)
        if unique:
            for fp in {f for f in fps if f is not None}:
                sharing = [c for c, f in zip(ids, fps, strict=True) if f == fp]
                assert trials_granted(billing, sharing, pid) <= 1


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 4), fp=fingerprints(pool=1), product=st.sampled_from(PRODUCTS))
def test_t4_customers_without_fingerprint_each_get_their_trial(
    n: int, fp: str | None, product: str
) -> None:
    # given n customers sharing one fingerprint (or none), and a unique-fingerprint trial
    billing = engine(catalog(unique=True, card_required=False))
    ids = [f"c{i}" for i in range(n)]
    got = [
        billing.attach(cid, product, customer_data=CustomerData(fingerprint=fp)).trial_ends_at
        is not None
        for cid in ids
    ]
    # then without a fingerprint every customer trials; with one, exactly the first does
    assert got == ([True] * n if fp is None else [True] + [False] * (n - 1))
    # and no customer trials twice, even after its trial ended
    clock_of(billing).advance(days=40)
    for cid in ids:
        billing.cancel(cid, product, immediately=True)
        assert billing.attach(cid, product).trial_ends_at is None
