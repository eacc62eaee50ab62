"""The idempotency fingerprint (I1, I2): what is stored with a key, and what it distinguishes.

The fingerprint is persisted with the key, so its format is part of the store's data: a retry
made after an upgrade of the library, within the key's 24 h, must still replay. These tests
pin it as the SHA-256 of a canonical JSON text written out in full here.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import (
    Autumn,
    ByEmail,
    CustomerData,
    FreeTrial,
    IdempotencyConflict,
    Item,
    ManualClock,
    Product,
    StoreError,
)
from autumn_core.app.unit import Unit, args_fingerprint
from autumn_core.errors import UniqueViolation
from tests.lifecycle.conftest import T0, Factory
from tests.lifecycle.test_trial_idempotency_boundaries import trial_catalog


def stored_fingerprint(billing: Autumn, operation: str, customer_id: str, key: str) -> str:
    with billing.store.transaction(write=False) as tx:
        pk = tx.customer_pk(customer_id)
        assert pk is not None
        record = tx.get_idempotency(operation, pk, key)
    assert record is not None
    return record.fingerprint


def sha(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def test_the_stored_track_fingerprint_is_the_canonical_text(billing: Autumn) -> None:
    """Given a track with every argument set, when it is stored under key k, then its
    fingerprint is the hash of its arguments in canonical form: sorted keys, no spaces,
    Decimals normalised as "d:", instants as "t:" ISO text, records as their fields."""
    # when
    billing.track(
        "c",
        "messages",
        value=Decimal("25.50"),
        properties={"tags": ["a", 1.5]},
        timestamp=T0 - timedelta(hours=1),
        customer_data=CustomerData(name="Ann"),
        idempotency_key="k",
    )
    # then
    canonical = (
        '{"customer_data":{"email":null,"fingerprint":null,"metadata":null,"name":"Ann"},'
        '"entity_id":null,"event_name":null,"feature_id":"messages","overage":"cap",'
        '"properties":{"tags":["a","d:1.5"]},"timestamp":"t:2025-04-01T08:00:00+00:00",'
        '"value":"d:25.5"}'
    )
    assert stored_fingerprint(billing, "track", "c", "k") == sha(canonical)


PACKS = Product("packs", add_on=True, items=[Item.priced("credits", price=1, billing="prepaid")])


@pytest.mark.parametrize(
    ("product", "kwargs", "canonical"),
    [
        (
            "pro-open",
            {},
            '{"customer_data":null,"entity_id":null,"force_checkout":false,'
            '"free_trial":"unset","product_id":"pro-open","quantities":null,"success_url":null}',
        ),
        (
            "pro-open",
            {"free_trial": FreeTrial(3, card_required=False)},
            '{"customer_data":null,"entity_id":null,"force_checkout":false,'
            '"free_trial":{"card_required":false,"duration":"day","length":"d:3",'
            '"unique_fingerprint":false},"product_id":"pro-open","quantities":null,'
            '"success_url":null}',
        ),
        (
            "packs",
            {"quantities": {"credits": 100}, "customer_data": CustomerData(email="a@b.co")},
            '{"customer_data":{"email":"a@b.co","fingerprint":null,"metadata":null,"name":null},'
            '"entity_id":null,"force_checkout":false,"free_trial":"unset","product_id":"packs",'
            '"quantities":{"credits":"d:100"},"success_url":null}',
        ),
    ],
    ids=["unset-trial", "explicit-trial", "quantities"],
)
def test_the_stored_attach_fingerprint_is_the_canonical_text(
    make: Factory, product: str, kwargs: dict[str, Any], canonical: str
) -> None:
    """Given an attach stored under key k, then its fingerprint is the hash of its arguments
    in canonical form (an unset trial is "unset"; 100 units are "d:100", not "d:1E+2")."""
    billing = make([*trial_catalog(), PACKS])
    billing.attach("c", product, idempotency_key="k", **kwargs)
    assert stored_fingerprint(billing, "attach", "c", "k") == sha(canonical)


def test_properties_in_another_order_replay(billing: Autumn) -> None:
    """Given a track with properties {a, b} under key k, when k is used with the same
    properties given in another order, then the first result is replayed."""
    first = billing.track("c", "messages", properties={"a": 1, "b": 2}, idempotency_key="k")
    again = billing.track("c", "messages", properties={"b": 2, "a": 1}, idempotency_key="k")
    assert again.replayed and again.event_id == first.event_id


def test_a_property_list_with_other_items_conflicts(billing: Autumn) -> None:
    """Given a track with properties {tags: [a]} under key k, when k is used with
    {tags: [b]}, then IdempotencyConflict names the key."""
    billing.track("c", "messages", properties={"tags": ["a"]}, idempotency_key="k")
    with pytest.raises(IdempotencyConflict, match="idempotency key 'k' was used with different"):
        billing.track("c", "messages", properties={"tags": ["b"]}, idempotency_key="k")


def test_a_replay_by_the_email_of_one_customer(billing: Autumn) -> None:
    """Given one customer (with an id) with an email, when a track by that email is repeated
    under key k, then the second call replays the first: one event."""
    billing.customers.create("a", email="ann@example.com")
    first = billing.track(ByEmail("ann@example.com"), "messages", value=2, idempotency_key="k")
    again = billing.track(ByEmail("ann@example.com"), "messages", value=2, idempotency_key="k")
    assert again.replayed and again.event_id == first.event_id
    assert len(billing.events.list("a")) == 1


def test_non_finite_decimals_keep_their_names() -> None:
    """The normal form tells infinities from NaN (a store never sees them from the engine,
    whose validation refuses them, but the normal form is total)."""
    assert args_fingerprint({"v": Decimal("Infinity")}) == sha('{"v":"Infinity"}')
    assert args_fingerprint({"v": Decimal("NaN")}) == sha('{"v":"NaN"}')


def test_an_argument_without_a_normal_form_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot normalise argument"):
        args_fingerprint({"v": object()})


def test_whole_numbers_in_properties_are_written_without_an_exponent() -> None:
    """Given properties holding the int 100 and the float 2500.0, then their normal form is
    "d:100" and "d:2500" (not "d:1E+2"), the same as the Decimals 100.00 and 2.5E+3."""
    canonical = sha('{"f":"d:2500","n":"d:100"}')
    assert args_fingerprint({"n": 100, "f": 2500.0}) == canonical
    assert args_fingerprint({"n": Decimal("100.00"), "f": Decimal("2.5E+3")}) == canonical


def test_a_live_key_is_never_overwritten_by_a_racing_call(
    billing: Autumn, clock: ManualClock
) -> None:
    """Given a track stored under key k an hour ago, when a second process that missed the
    replay (its read raced the first's commit) remembers its own result under k, then the
    store refuses it (the call runs again and replays) and the first record stays."""
    # given
    billing.track("c", "messages", value=1, idempotency_key="k")
    clock.advance(hours=1)
    first = stored_fingerprint(billing, "track", "c", "k")
    # when
    with billing.store.transaction() as tx:
        unit = Unit(billing._ctx, tx, write=True)
        pk = unit.pk_of("c")
        assert pk is not None
        # then
        with pytest.raises(UniqueViolation, match="idempotency key 'k' is in use"):
            unit.remember("track", pk, "k", "another-fingerprint", {"rival": True})
    assert stored_fingerprint(billing, "track", "c", "k") == first
