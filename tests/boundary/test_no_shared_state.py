"""Issue 19: values that cross the API are the caller's own copies, in both directions, on every
store: editing what was passed in, or what came back, never edits the engine's state."""

from __future__ import annotations

from decimal import Decimal

from autumn_core import Autumn, Catalog, CustomerData, Feature, Item, Product
from tests.seats.conftest import Make


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages", event_names=["chat"])],
        products=[
            Product(
                "free",
                default=True,
                items=[Item.feature("messages", included=100, reset="month")],
            )
        ],
    )


def test_metadata_given_to_create_is_copied(make: Make) -> None:
    # given a customer created with a nested list in its metadata
    billing = make(catalog())
    tags = ["trial"]
    given = {"tags": tags, "plan": {"seats": [1]}}
    billing.customers.create("c", metadata=given)
    # when the caller edits what it passed in, then an unrelated update writes the customer
    tags.append("edited")
    given["plan"]["seats"].append(2)  # type: ignore[index]
    given["new"] = True
    billing.customers.update("c", name="Ann")
    # then the engine kept what it was given
    assert billing.customers.get("c").metadata == {"tags": ["trial"], "plan": {"seats": [1]}}


def test_metadata_returned_is_the_callers_copy(make: Make) -> None:
    billing = make(catalog())
    created = billing.customers.create("c", metadata={"tags": ["trial"]})
    # when the caller edits the metadata of results it got back
    created.metadata["tags"].append("from-create")
    billing.customers.get("c").metadata["tags"].append("from-get")
    billing.customers.list()[0].metadata["tags"].append("from-list")
    billing.customers.update("c", name="Ann").metadata["tags"].append("from-update")
    billing.customers.update("c", name="Bob")
    # then nothing of it reached the engine
    assert billing.customers.get("c").metadata == {"tags": ["trial"]}


def test_metadata_given_to_update_and_customer_data_is_copied(make: Make) -> None:
    billing = make(catalog())
    data = {"tags": ["a"]}
    billing.track("c", "messages", customer_data=CustomerData(metadata=data))
    data["tags"].append("edited")
    assert billing.customers.get("c").metadata == {"tags": ["a"]}
    patch = {"tags": ["b"]}
    billing.customers.update("c", metadata=patch)
    patch["tags"].append("edited")
    billing.customers.update("c", name="Ann")
    assert billing.customers.get("c").metadata == {"tags": ["b"]}


def test_event_properties_are_copied_both_ways(make: Make) -> None:
    billing = make(catalog())
    props = {"path": ["a"], "n": 1}
    billing.track("c", "messages", properties=props)
    # when the caller edits what it passed, and the event it read back
    props["path"].append("edited")  # type: ignore[attr-defined]
    billing.events.list("c")[0].properties["path"].append("read-edit")
    billing.events.list("c")[0].properties["n"] = 2
    # then the event is as tracked
    event = billing.events.list("c")[0]
    assert (event.value, event.properties) == (Decimal(1), {"path": ["a"], "n": 1})


def test_a_second_process_sees_what_was_given(make: Make, second_store: object) -> None:
    # given edits on both sides of the API, then writes
    billing = make(catalog())
    meta = {"tags": ["trial"]}
    got = billing.customers.create("c", metadata=meta)
    meta["tags"].append("x")
    got.metadata["tags"].append("y")
    billing.customers.update("c", name="Ann")
    # then another engine on the same data reads the original value
    other = Autumn(catalog(), store=second_store(billing.store), clock=billing.clock)  # type: ignore[operator]
    assert other.customers.get("c").metadata == {"tags": ["trial"]}
