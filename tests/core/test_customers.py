"""Customers (DOMAIN.md §3, C1-C14; API.md "Customers")."""

from __future__ import annotations

import threading

import pytest

from autumn_core import (
    Autumn,
    ByEmail,
    Catalog,
    CustomerData,
    CustomerNotFound,
    Feature,
    InvalidRequest,
    Item,
    ManualClock,
    Product,
)
from autumn_core.errors import Conflict
from tests.conftest import T0, StoreFactory


def test_c1_only_the_id_is_required(billing: Autumn) -> None:
    customer = billing.customers.create("u-1")
    assert customer.id == "u-1"
    assert customer.name is None and customer.email is None
    assert customer.created_at == T0
    assert customer.gateway_customer_id is None  # C7


def test_c1_neither_id_nor_email_is_refused(billing: Autumn) -> None:
    with pytest.raises(InvalidRequest):
        billing.customers.create()
    assert billing.customers.list() == []


@pytest.mark.parametrize("bad", ["", " ", "user 7", "a\tb", "x" * 256, "a\x00b", "a\nb", 7, None])
def test_c2_invalid_ids_store_nothing(billing: Autumn, bad: object) -> None:
    with pytest.raises(InvalidRequest):
        billing.customers.create(bad, email=None) if bad is not None else billing.customers.create(
            None
        )  # type: ignore[arg-type]
    assert billing.customers.list() == []


@pytest.mark.parametrize("good", ["ann@example.com", "org:42", "user.7", "x" * 255, "Ünïcode"])
def test_c2_valid_ids(billing: Autumn, good: str) -> None:
    assert billing.customers.create(good).id == good


def test_c2_ids_are_case_sensitive(billing: Autumn, clock: ManualClock) -> None:
    billing.customers.create("Ann")
    clock.advance(seconds=1)
    billing.customers.create("ann")
    assert [c.id for c in billing.customers.list()] == ["Ann", "ann"]


@pytest.mark.parametrize("bad", ["plain", "a@", "@b.c", "a b@c.d", "a@b@c", ""])
def test_c3_malformed_emails_are_refused(billing: Autumn, bad: str) -> None:
    with pytest.raises(InvalidRequest, match="email"):
        billing.customers.create("u", email=bad)
    assert billing.customers.list() == []


def test_c4_create_is_get_or_create_and_fills_only_empty_fields(billing: Autumn) -> None:
    billing.customers.create("u", name="Ann", fingerprint="fp-1", metadata={"plan": "a"})
    again = billing.customers.create(
        "u", name="Other", email="ann@x.io", fingerprint="fp-2", metadata={"plan": "b"}
    )
    assert again.name == "Ann"
    assert again.email == "ann@x.io"
    assert again.fingerprint == "fp-1"
    assert again.metadata == {"plan": "a"}
    assert [p.id for p in again.products] == ["free"]  # defaults not attached twice
    assert len(billing.customers.list()) == 1


def test_c5_email_claim_keeps_the_precreated_customer(billing: Autumn) -> None:
    pre = billing.customers.create(None, email="Dana@corp.io", name="Dana")
    assert pre.id is None
    claimed = billing.customers.create("u-881", email="dana@corp.io")
    assert claimed.id == "u-881"
    assert claimed.name == "Dana"
    assert claimed.email == "Dana@corp.io"
    assert claimed.created_at == pre.created_at
    assert len(billing.customers.list()) == 1


def test_c5_two_idless_creates_with_one_email_are_one_customer(billing: Autumn) -> None:
    a = billing.customers.create(None, email="x@y.io")
    b = billing.customers.create(None, email="X@Y.IO")
    billing.customers.create(None, email="other@y.io")
    assert a.created_at == b.created_at
    assert len(billing.customers.list()) == 2


def test_c5_auto_create_claims_by_customer_data_email(billing: Autumn) -> None:
    billing.customers.create(None, email="cfo@bigco.com", name="CFO")
    billing.track("u-9", "messages", value=5, customer_data=CustomerData(email="CFO@bigco.com"))
    customer = billing.customers.get("u-9")
    assert customer.name == "CFO"
    assert len(billing.customers.list()) == 1


def test_c6_defaults_attach_on_creation_once_per_group(new_store: StoreFactory) -> None:
    catalog = Catalog(
        features=[Feature.metered("m"), Feature.metered("api")],
        products=[
            Product("free", default=True, items=[Item.feature("m", included=10)]),
            Product("api_free", default=True, group="api", items=[Item.feature("api", included=5)]),
            Product("other", items=[Item.feature("m", included=99)]),
        ],
    )
    billing = Autumn(catalog, store=new_store())
    customer = billing.customers.create("u")
    assert sorted(p.id for p in customer.products) == ["api_free", "free"]
    assert customer.features["m"].remaining == 10
    assert customer.features["api"].remaining == 5


def test_c6_concurrent_creates_yield_one_customer(billing: Autumn) -> None:
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        billing.customers.create("race", email="race@x.io")

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    customers = billing.customers.list()
    assert [c.id for c in customers] == ["race"]
    assert len(customers[0].products) == 1


def test_c8_auto_create_on_track_with_customer_data(billing: Autumn) -> None:
    # E8
    billing.track(
        "new-cus",
        "messages",
        value=5,
        customer_data=CustomerData(name="Test Customer", email="test@test.com"),
    )
    customer = billing.customers.get("new-cus")
    assert (customer.name, customer.email) == ("Test Customer", "test@test.com")
    assert [p.id for p in customer.products] == ["free"]
    assert [e.value for e in billing.events.list("new-cus")] == [5]
    entity = billing.entities.create("new-cus", "ent-1", "users", name="Test Entity")
    assert entity.name == "Test Entity"
    assert [e.id for e in billing.customers.get("new-cus").entities] == ["ent-1"]


def test_c8_customer_data_is_ignored_for_an_existing_customer(billing: Autumn) -> None:
    billing.customers.create("u", name="Ann")
    billing.check("u", "messages", customer_data=CustomerData(name="Bob", email="b@b.io"))
    assert billing.customers.get("u").name == "Ann"
    assert billing.customers.get("u").email is None


def test_c8_auto_create_off_raises_customer_not_found(new_store: StoreFactory) -> None:
    from tests.conftest import reference_catalog

    billing = Autumn(reference_catalog(), store=new_store(), auto_create_customers=False)
    for call in (
        lambda: billing.check("ghost", "messages"),
        lambda: billing.track("ghost", "messages"),
        lambda: billing.attach("ghost", "seats5"),
        lambda: billing.balances.grant("ghost", "messages", 5),
        lambda: billing.entities.create("ghost", "e", "users"),
    ):
        with pytest.raises(CustomerNotFound):
            call()
    assert billing.customers.list() == []


def test_c8_reads_never_create(billing: Autumn) -> None:
    for call in (
        lambda: billing.customers.get("ghost"),
        lambda: billing.customers.update("ghost", name="x"),
        lambda: billing.customers.delete("ghost"),
        lambda: billing.events.list("ghost"),
        lambda: billing.invoices.list("ghost"),
        lambda: billing.entities.list("ghost"),
    ):
        with pytest.raises(CustomerNotFound):
            call()
    assert billing.customers.list() == []


def test_c9_update_patches_and_renames(billing: Autumn) -> None:
    billing.customers.create("u", name="Ann")
    billing.track("u", "messages", value=3)
    updated = billing.customers.update(
        "u", name="Anna", email="anna@x.io", fingerprint="fp", metadata={"k": 1}, new_id="u2"
    )
    assert (updated.id, updated.name, updated.email, updated.fingerprint, updated.metadata) == (
        "u2",
        "Anna",
        "anna@x.io",
        "fp",
        {"k": 1},
    )
    with pytest.raises(CustomerNotFound):
        billing.customers.get("u")
    assert [e.value for e in billing.events.list("u2")] == [3]
    assert billing.customers.get("u2").features["messages"].usage == 3


def test_c9_rename_to_a_taken_id_conflicts(billing: Autumn) -> None:
    billing.customers.create("a")
    billing.customers.create("b")
    with pytest.raises(Conflict):
        billing.customers.update("a", new_id="b")
    assert sorted(c.id or "" for c in billing.customers.list()) == ["a", "b"]


def test_c9_update_validates_first(billing: Autumn) -> None:
    billing.customers.create("a", email="a@x.io")
    with pytest.raises(InvalidRequest):
        billing.customers.update("a", email="nope", name="changed")
    with pytest.raises(InvalidRequest):
        billing.customers.update("a", new_id="has space")
    assert billing.customers.get("a").email == "a@x.io"
    assert billing.customers.get("a").name is None


def test_c10_delete_removes_everything(billing: Autumn) -> None:
    billing.track("u", "messages", value=3)
    billing.customers.delete("u")
    with pytest.raises(CustomerNotFound):
        billing.customers.get("u")
    again = billing.customers.create("u")
    assert again.features["messages"].usage == 0
    assert billing.events.list("u") == []


def test_c11_list_orders_by_creation_and_paginates(billing: Autumn, clock: object) -> None:
    from autumn_core import ManualClock

    assert isinstance(clock, ManualClock)
    for name in ["c", "a", "b"]:
        billing.customers.create(name, email=f"{name}@x.io")
        clock.advance(seconds=1)
    billing.customers.create(None, email="pre@x.io")
    assert [c.id for c in billing.customers.list()] == ["c", "a", "b", None]
    assert [c.id for c in billing.customers.list(limit=2)] == ["c", "a"]
    assert [c.id for c in billing.customers.list(starting_after="a")] == ["b", None]
    assert [c.id for c in billing.customers.list(email="B@X.IO")] == ["b"]
    with pytest.raises(InvalidRequest):
        billing.customers.list(limit=0)


def test_c11_get_by_email_finds_precreated_customers(billing: Autumn) -> None:
    billing.customers.create(None, email="pre@x.io", name="Pre")
    assert billing.customers.get_by_email("PRE@x.io").name == "Pre"
    with pytest.raises(CustomerNotFound):
        billing.customers.get_by_email("none@x.io")


def test_c14_by_email_enables_a_product_before_signup(billing: Autumn) -> None:
    billing.customers.create(None, email="cfo@bigco.com")
    result = billing.attach(ByEmail("cfo@bigco.com"), "seats5")
    assert result.scenario == "new"
    claimed = billing.customers.create("cfo-1", email="CFO@bigco.com")
    assert sorted(p.id for p in claimed.products) == ["free", "seats5"]
    assert claimed.features["users"].remaining == 5


def test_c14_by_email_never_creates_and_refuses_ambiguity(billing: Autumn) -> None:
    with pytest.raises(CustomerNotFound):
        billing.attach(ByEmail("nobody@x.io"), "seats5")
    billing.customers.create("a", email="dup@x.io")
    billing.customers.create("b", email="dup@x.io")
    with pytest.raises(InvalidRequest, match="several"):
        billing.check(ByEmail("dup@x.io"), "messages")
    assert billing.check("a", "messages").allowed
    assert len(billing.customers.list()) == 2


def test_c14_by_email_resolves_a_single_customer_with_an_id(billing: Autumn) -> None:
    billing.customers.create("a", email="one@x.io")
    assert billing.track(ByEmail("ONE@x.io"), "messages", value=2).customer_id == "a"


@pytest.mark.parametrize("bad", [123, "", None, 1.5, [1], "has space"])
def test_every_call_refuses_a_malformed_customer_id(billing: Autumn, bad: object) -> None:
    calls = [
        lambda: billing.customers.get(bad),
        lambda: billing.customers.update(bad, name="x"),
        lambda: billing.customers.delete(bad),
        lambda: billing.events.list(bad),
        lambda: billing.invoices.list(bad),
        lambda: billing.entities.list(bad),
        lambda: billing.entities.get(bad, "e"),
        lambda: billing.check(bad, "messages"),
        lambda: billing.track(bad, "messages"),
        lambda: billing.attach(bad, "seats5"),
        lambda: billing.balances.grant(bad, "messages", 1),
    ]
    for call in calls:
        with pytest.raises(InvalidRequest):
            call()
    assert billing.customers.list() == []
