"""The boundaries of the trial claim (T1-T5) and of idempotency (I1-I2), one test per boundary.

Each test names the single-line change it exists to catch (see tests/MUTATION.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from autumn_core import (
    Autumn,
    ByEmail,
    CustomerData,
    Feature,
    FreeTrial,
    IdempotencyConflict,
    InvalidRequest,
    Item,
    ManualClock,
    Price,
    Product,
)
from tests.lifecycle.conftest import FEATURES, T0, D, Factory, msgs, statuses, totals

DEVICE = CustomerData(fingerprint="device-1")


def unique_trial(length: int = 7, duration: str = "day") -> FreeTrial:
    return FreeTrial(length, duration=duration, unique_fingerprint=True, card_required=False)


def trial_catalog() -> list[Product]:
    return [
        Product("pro-fp", price=Price(20), free_trial=unique_trial(), items=[msgs(500)]),
        Product(
            "pro-open",
            price=Price(20),
            free_trial=FreeTrial(7, card_required=False),
            items=[msgs(500)],
        ),
        Product(
            "addon-fp",
            add_on=True,
            price=Price(20),
            free_trial=unique_trial(5),
            items=[Item.feature("words", included=10)],
        ),
    ]


# -- T2 + T4: the claim of a trial inherited from a trialing cycle -------------------------------
def test_an_inherited_trial_is_claimed_per_fingerprint(make: Factory) -> None:
    """Given a customer whose add-on inherited its trial from a trialing cycle on device-1,
    when another customer on device-1, trialing another product, adds the same add-on,
    then the add-on's trial is used by that fingerprint: it joins without a trial and is paid.
    (Catches the inherited claim losing its fingerprint.)"""
    # given
    billing = make(trial_catalog())
    billing.attach("first", "pro-fp", customer_data=DEVICE)
    assert billing.attach("first", "addon-fp").trial_ends_at == T0 + timedelta(days=7)
    billing.attach("second", "pro-open", customer_data=DEVICE)
    assert statuses(billing, "second") == {"pro-open": "trialing"}
    # when
    result = billing.attach("second", "addon-fp")
    # then
    assert result.trial_ends_at is None
    assert statuses(billing, "second") == {"pro-open": "trialing", "addon-fp": "active"}
    assert result.invoice is not None and result.invoice.total == D("20.00")


def test_an_inherited_trial_uses_up_the_subject_claim(make: Factory) -> None:
    """Given an add-on that inherited a trial and was then canceled, when the same customer,
    still trialing, adds it again, then it gets no second trial (T3 through T2)."""
    # given
    billing = make(trial_catalog())
    billing.attach("c", "pro-open")
    billing.attach("c", "addon-fp")
    billing.cancel("c", "addon-fp", immediately=True)
    # when
    again = billing.attach("c", "addon-fp")
    # then
    assert again.trial_ends_at is None
    assert again.invoice is not None and again.invoice.total == D("20.00")


# -- T1 + T5: the claim of an explicit FreeTrial ----------------------------------------------------
def test_an_explicit_free_trial_uses_up_the_product_trial(make: Factory) -> None:
    """Given a customer who trialed a product on an explicit FreeTrial(3), then left it,
    when they attach it again with its own trial, then there is none: the explicit trial's
    claim was inserted. (Catches the explicit claim not being inserted.)"""
    # given
    billing = make(trial_catalog())
    first = billing.attach("c", "pro-open", free_trial=FreeTrial(3, card_required=False))
    assert first.trial_ends_at == T0 + timedelta(days=3)
    billing.cancel("c", "pro-open", immediately=True)
    # when
    again = billing.attach("c", "pro-open")
    # then
    assert again.trial_ends_at is None
    assert totals(billing)[-1] == D("20.00")


def test_an_explicit_free_trial_is_granted_after_the_product_trial_was_used(
    make: Factory,
) -> None:
    """Given a customer who used a product's own trial and left it, when they attach it with
    an explicit FreeTrial(3), then they get those 3 days (no dedup, T1): a claim that already
    exists does not re-plan an explicit trial away."""
    # given
    billing = make(trial_catalog())
    billing.attach("c", "pro-open")
    billing.cancel("c", "pro-open", immediately=True)
    # when
    again = billing.attach("c", "pro-open", free_trial=FreeTrial(3, card_required=False))
    # then
    assert again.trial_ends_at == T0 + timedelta(days=3)
    assert statuses(billing) == {"pro-open": "trialing"}


def test_an_explicit_free_trial_on_an_upgrade_is_claimed(make: Factory) -> None:
    """Given a customer upgrading on an explicit FreeTrial(3), who then leaves the product,
    when they attach it again, then its own trial is used up too."""
    # given
    billing = make([Product("basic", price=Price(10), items=[msgs(100)]), *trial_catalog()])
    billing.attach("c", "basic")
    upgrade = billing.attach("c", "pro-open", free_trial=FreeTrial(3, card_required=False))
    assert (upgrade.scenario, upgrade.trial_ends_at) == ("upgrade", T0 + timedelta(days=3))
    billing.cancel("c", "pro-open", immediately=True)
    # when
    again = billing.attach("c", "pro-open")
    # then
    assert again.trial_ends_at is None


# -- T6: trial lengths in weeks and years ---------------------------------------------------------
@pytest.mark.parametrize(
    ("length", "duration", "ends"),
    [
        (2, "week", T0 + timedelta(days=14)),
        (1, "year", T0.replace(year=T0.year + 1)),
        (1, "month", T0.replace(month=T0.month + 1)),
    ],
)
def test_trial_lengths_in_weeks_months_and_years(
    make: Factory, length: int, duration: str, ends: Any
) -> None:
    """Given a product with a FreeTrial(length, duration), when it is attached, then the
    trial ends exactly length x duration later (weeks are 7 days, years calendar years)."""
    billing = make(
        [Product("t", price=Price(20), free_trial=unique_trial(length, duration), items=[])]
    )
    assert billing.attach("c", "t").trial_ends_at == ends


# -- I1/I2: every field of the track fingerprint --------------------------------------------------
FIRST_TRACK: dict[str, Any] = {
    "feature_id": "messages",
    "value": D("25.5"),
    "properties": {"model": "small"},
    "timestamp": T0 - timedelta(hours=1),
    "overage": "cap",
    "customer_data": CustomerData(name="Ann"),
}


@pytest.mark.parametrize(
    "change",
    [
        {"feature_id": "words"},
        {"feature_id": None, "event_name": "chat"},
        {"value": D("25.6")},
        {"entity_id": "e1"},
        {"properties": {"model": "large"}},
        {"properties": {}},
        {"timestamp": T0 - timedelta(hours=2)},
        {"timestamp": None},
        {"overage": "overflow"},
        {"customer_data": CustomerData(name="Bob")},
        {"customer_data": None},
    ],
    ids=lambda change: ",".join(f"{k}={v}" for k, v in change.items()),
)
def test_each_track_argument_is_part_of_the_idempotency_fingerprint(
    billing_chat: Autumn, change: dict[str, Any]
) -> None:
    """Given a track stored under key k, when k is used again with one argument changed
    (a missing timestamp included: it is not the clock's now), then IdempotencyConflict and
    nothing changes."""
    # given
    billing_chat.entities.create("c", "e1", "users")
    billing_chat.track("c", idempotency_key="k", **FIRST_TRACK)
    before = billing_chat.customers.get("c"), billing_chat.events.list("c")
    # when / then
    with pytest.raises(IdempotencyConflict):
        billing_chat.track("c", idempotency_key="k", **{**FIRST_TRACK, **change})
    assert (billing_chat.customers.get("c"), billing_chat.events.list("c")) == before


@pytest.mark.parametrize("value", [25.5, "25.5", D("25.50")])
def test_the_same_track_arguments_after_normalisation_replay(
    billing_chat: Autumn, value: Any
) -> None:
    """Given a track stored under key k, when k is used again with equal arguments (the value
    as a float, a string or another Decimal scale), then the first result is replayed."""
    # given
    first = billing_chat.track("c", idempotency_key="k", **FIRST_TRACK)
    # when
    again = billing_chat.track("c", idempotency_key="k", **{**FIRST_TRACK, "value": value})
    # then
    assert again.replayed and again.event_id == first.event_id
    assert len(billing_chat.events.list("c")) == 1


@pytest.fixture
def billing_chat(make: Factory) -> Autumn:
    """The lifecycle features, with ``messages`` listening to the event ``chat``."""
    others = [f for f in FEATURES if f.id != "messages"]
    return make(
        [
            Product(
                "free",
                default=True,
                items=[msgs(100), Item.feature("words", included=100), Item.feature("users")],
            )
        ],
        features=[Feature.metered("messages", event_names=["chat"]), *others],
    )


# -- I1/I2: every field of the attach fingerprint -------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        {"product_id": "pro-fp"},
        {"entity_id": "e1"},
        {"free_trial": None},
        {"free_trial": FreeTrial(3, card_required=False)},
        {"success_url": "https://example.com/ok"},
        {"force_checkout": True},
        {"customer_data": CustomerData(name="Bob")},
    ],
    ids=lambda change: ",".join(f"{k}={v}" for k, v in change.items()),
)
def test_each_attach_argument_is_part_of_the_idempotency_fingerprint(
    make: Factory, change: dict[str, Any]
) -> None:
    """Given an attach stored under key k, when k is used again with one argument changed,
    then IdempotencyConflict and nothing changes."""
    # given
    billing = make(trial_catalog())
    billing.entities.create("c", "e1", "users")
    first: dict[str, Any] = {"product_id": "pro-open", "customer_data": CustomerData(name="Ann")}
    billing.attach("c", idempotency_key="k", **first)
    before = billing.customers.get("c"), billing.invoices.list("c")
    # when / then
    with pytest.raises(IdempotencyConflict):
        billing.attach("c", idempotency_key="k", **{**first, **change})
    assert (billing.customers.get("c"), billing.invoices.list("c")) == before


def test_attach_quantities_are_part_of_the_idempotency_fingerprint(make: Factory) -> None:
    """Given a prepaid attach of 10 units under key k, when k is used with 20 units, then
    IdempotencyConflict; with "10" units it replays."""
    # given
    billing = make(
        [Product("packs", add_on=True, items=[Item.priced("credits", price=1, billing="prepaid")])]
    )
    billing.attach("c", "packs", quantities={"credits": 10}, idempotency_key="k")
    # when / then
    with pytest.raises(IdempotencyConflict):
        billing.attach("c", "packs", quantities={"credits": 20}, idempotency_key="k")
    again = billing.attach("c", "packs", quantities={"credits": "10"}, idempotency_key="k")
    assert again.replayed
    assert totals(billing) == [D("10.00")]


# -- I1 + C5: a replay addressed by email ---------------------------------------------------------
def test_a_replay_by_an_email_several_customers_share_is_refused(billing: Autumn) -> None:
    """Given two customers with one email and a track under key k by one of them, when k is
    replayed by that email, then the ambiguous email is refused (InvalidRequest): the replay
    does not pick one of the customers."""
    # given
    billing.customers.create("a", email="team@example.com")
    billing.customers.create("b", email="team@example.com")
    billing.track("a", "messages", value=3, idempotency_key="k")
    # when / then
    with pytest.raises(InvalidRequest, match="several customers"):
        billing.track(ByEmail("team@example.com"), "messages", value=3, idempotency_key="k")
    with pytest.raises(InvalidRequest, match="several customers"):
        billing.attach(ByEmail("team@example.com"), "pro", idempotency_key="k")


def test_a_replay_by_email_reaches_the_precreated_customer(billing: Autumn) -> None:
    """Given a pre-created (id-less) customer and a customer with an id sharing its email,
    when a track by that email is repeated under key k, then the second call replays the
    first, on the pre-created customer."""
    # given
    billing.customers.create("b", email="team@example.com")
    billing.customers.create(None, email="team@example.com")
    ref = ByEmail("team@example.com")
    first = billing.track(ref, "messages", value=3, idempotency_key="k")
    # when
    again = billing.track(ref, "messages", value=3, idempotency_key="k")
    # then
    assert again.replayed and again.event_id == first.event_id
    assert first.customer_id is None
    assert billing.events.list("b") == []


# -- P11: an invoice line of half a cent ----------------------------------------------------------
def test_an_overage_of_half_a_cent_is_billed_half_up(make: Factory, clock: ManualClock) -> None:
    """Given a $10 monthly product with messages at $0.005 each in arrears, when 5 messages
    are used and the period renews, then the overage line is $0.03 (half-up; the even cent
    would be $0.02) and the renewal invoice is $10.03."""
    # given
    billing = make(
        [
            Product(
                "meter",
                price=Price(10),
                items=[Item.priced("messages", price="0.005", billing="usage")],
            )
        ]
    )
    billing.attach("c", "meter")
    billing.track("c", "messages", value=5)
    # when
    clock.set(T0.replace(month=T0.month + 1))
    billing.process_due()
    # then
    renewal = billing.invoices.list("c")[-1]
    assert sorted(line.amount for line in renewal.lines) == [D("0.03"), D("10.00")]
    assert totals(billing) == [D("10.00"), D("10.03")]


# -- T3/T4: what the claim is keyed by --------------------------------------------------------------
def test_a_trial_not_unique_per_fingerprint_is_granted_on_a_shared_device(make: Factory) -> None:
    """Given a product whose trial is not unique per fingerprint, used on device-1, when
    another customer on device-1 attaches it, then they get a trial too (only T3 applies)."""
    # given
    billing = make(trial_catalog())
    billing.attach("first", "pro-open", customer_data=DEVICE)
    # when
    second = billing.attach("second", "pro-open", customer_data=DEVICE)
    # then
    assert second.trial_ends_at == T0 + timedelta(days=7)


def test_an_entity_may_trial_a_product_the_customer_trialed(make: Factory) -> None:
    """Given a customer who trialed a product at customer scope, when an entity of theirs
    attaches it, then the entity gets its own trial (T3: the scope is that entity)."""
    # given
    billing = make(trial_catalog())
    billing.entities.create("c", "e1", "users")
    billing.attach("c", "pro-open")
    # when
    entity = billing.attach("c", "pro-open", entity_id="e1")
    # then
    assert entity.trial_ends_at == T0 + timedelta(days=7)


def test_an_explicit_free_trial_on_an_entity_is_claimed_for_that_entity(make: Factory) -> None:
    """Given an entity that trialed a product on an explicit FreeTrial(3) and left it, when
    the entity attaches it again, then its own trial is used up, while the customer's is not."""
    # given
    billing = make(trial_catalog())
    billing.entities.create("c", "e1", "users")
    billing.attach("c", "pro-open", entity_id="e1", free_trial=FreeTrial(3, card_required=False))
    billing.cancel("c", "pro-open", entity_id="e1", immediately=True)
    # when
    entity_again = billing.attach("c", "pro-open", entity_id="e1")
    customer = billing.attach("c", "pro-open")
    # then
    assert entity_again.trial_ends_at is None
    assert customer.trial_ends_at == T0 + timedelta(days=7)


def test_a_preview_after_the_trial_was_used_shows_no_trial(make: Factory) -> None:
    """Given a customer who used a product's trial and left it, when they preview attaching
    it again, then the preview (which plans but inserts no claim) shows $20 due now and the
    next cycle a month away, not a trial."""
    # given
    billing = make(trial_catalog())
    billing.attach("c", "pro-open")
    billing.cancel("c", "pro-open", immediately=True)
    # when
    preview = billing.preview_attach("c", "pro-open")
    # then
    assert (preview.due_now, preview.next_cycle_at) == (D("20.00"), T0.replace(month=5))
