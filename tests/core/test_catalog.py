"""Catalog validation (DOMAIN.md 2.2), TOML round trip, and product versioning."""

from __future__ import annotations

from pathlib import Path

import pytest

from autumn_core import (
    INF,
    Autumn,
    Catalog,
    Feature,
    FreeTrial,
    InvalidCatalog,
    Item,
    Price,
    Product,
    Rollover,
    Tier,
)
from tests.conftest import StoreFactory

FEATURES = [
    Feature.metered("messages", event_names=["chat"]),
    Feature.allocated("seats"),
    Feature.boolean("sso"),
    Feature.credit_system("credits", costs={"messages": "0.5"}),
]


def cat(*products: Product, features: list[Feature] | None = None) -> Catalog:
    return Catalog(features=FEATURES if features is None else features, products=products)


@pytest.mark.parametrize(
    ("product", "needle"),
    [
        (Product("p", items=[Item.feature("ghost", included=1)]), "item 'ghost'"),
        (Product("p", items=[Item.feature("seats", included=1, reset="month")]), "allocated"),
        (Product("p", items=[Item.feature("sso", included=3)]), "boolean"),
        (Product("p", items=[Item.priced("messages")]), "exactly one of price / tiers"),
        (
            Product("p", items=[Item.priced("messages", price=1, tiers=[Tier(INF, 1)])]),
            "exactly one of price / tiers",
        ),
        (Product("p", items=[Item.priced("messages", price=1, interval="one_off")]), "one_off"),
        (
            Product("p", items=[Item.priced("messages", price=1, interval="month", reset="day")]),
            "reset at its billing interval",
        ),
        (
            Product(
                "p",
                items=[
                    Item.priced(
                        "messages", price=4, billing="prepaid", included=30, billing_units=50
                    )
                ],
            ),
            "multiple of billing_units",
        ),
        (
            Product(
                "p", items=[Item.priced("messages", price=4, billing="prepaid", billing_units=0)]
            ),
            "billing_units",
        ),
        (
            Product(
                "p",
                items=[Item.priced("messages", tiers=[Tier(100, 1), Tier(50, 1), Tier(INF, 1)])],
            ),
            "ascending",
        ),
        (Product("p", items=[Item.priced("messages", tiers=[Tier(100, 1)])]), "INF"),
        (
            Product(
                "p",
                items=[Item.priced("messages", tiers=[Tier(100, 1, flat_amount=5), Tier(INF, 1)])],
            ),
            "flat_amount",
        ),
        (Product("p", items=[Item.priced("messages", price=-1)]), "negative"),
        (Product("p", price=Price(-5)), "negative"),
        (Product("p", items=[Item.feature("messages", included=-1)]), "negative"),
        (
            Product("p", items=[Item.feature("messages", included=5, rollover=Rollover(max=1))]),
            "rollover",
        ),
        (
            Product(
                "p",
                items=[
                    Item.feature(
                        "messages",
                        included=5,
                        reset="month",
                        rollover=Rollover(max=1, max_percent=5),
                    )
                ],
            ),
            "not both",
        ),
        (
            Product("p", items=[Item.feature("messages", included=5, per_entity="messages")]),
            "per_entity",
        ),
        (Product("p", default=True, price=Price(20)), "default"),
        (Product("p", default=True, price=Price(20), free_trial=FreeTrial(7)), "default"),
    ],
)
def test_invalid_catalogs_name_the_product_and_item(product: Product, needle: str) -> None:
    with pytest.raises(InvalidCatalog, match="product 'p'") as info:
        cat(product)
    assert needle in str(info.value)


def test_two_defaults_in_one_group() -> None:
    with pytest.raises(InvalidCatalog, match="two default"):
        cat(Product("a", default=True), Product("b", default=True))
    cat(Product("a", default=True), Product("b", default=True, group="api"))


def test_a_card_less_trial_default_is_allowed() -> None:
    cat(Product("t", default=True, price=Price(20), free_trial=FreeTrial(7, card_required=False)))


def test_credit_systems_must_cost_known_metered_features() -> None:
    with pytest.raises(InvalidCatalog, match="unknown feature 'ghost'"):
        Catalog(features=[Feature.credit_system("c", costs={"ghost": 1})])
    with pytest.raises(InvalidCatalog, match="not metered"):
        Catalog(features=[Feature.allocated("s"), Feature.credit_system("c", costs={"s": 1})])
    with pytest.raises(InvalidCatalog, match="> 0"):
        Catalog(features=[Feature.metered("m"), Feature.credit_system("c", costs={"m": 0})])


def test_duplicates_are_refused() -> None:
    with pytest.raises(InvalidCatalog, match="twice"):
        Catalog(features=[Feature.metered("m"), Feature.metered("m")])
    with pytest.raises(InvalidCatalog, match="twice"):
        cat(Product("p"), Product("p"))


def test_priced_reset_defaults_to_its_interval() -> None:
    c = cat(
        Product(
            "p",
            items=[
                Item.priced("messages", price="0.01", interval="year"),
                Item.priced("seats", price=10),
                Item.priced(
                    "messages", price=5, billing="prepaid", billing_units=100, interval="one_off"
                ),
            ],
        )
    )
    product = c.product("p")
    assert product is not None
    assert [i.reset for i in product.items] == ["year", None, None]


def test_product_classification() -> None:
    c = cat(
        Product("free", items=[Item.feature("messages", included=5)]),
        Product("zero", items=[Item.priced("messages", price=0)]),
        Product("once", price=Price(9, interval="one_off")),
        Product("pro", price=Price(20)),
    )
    kinds = {p.id: (p.is_free, p.is_one_off, p.is_recurring_paid) for p in c.products}
    assert kinds == {
        "free": (True, False, False),
        "zero": (True, False, False),
        "once": (False, True, False),
        "pro": (False, False, True),
    }


FULL = cat(
    Product(
        "free",
        name="Free",
        default=True,
        items=[Item.feature("messages", included=100, reset="month")],
    ),
    Product(
        "pro",
        name="Pro",
        price=Price(20, interval="month"),
        free_trial=FreeTrial(14, duration="day", unique_fingerprint=True, card_required=False),
        group="main",
        items=[
            Item.feature("sso"),
            Item.feature(
                "messages",
                included=1000,
                reset="month",
                rollover=Rollover(max_percent=25, expires_after_months=2),
            ),
            Item.priced("messages", price="0.01", billing="usage", max_purchase=5000),
            Item.priced(
                "seats", included=3, price=10, billing="usage", interval="month", on_decrease="none"
            ),
            Item.priced(
                "messages", tiers=[Tier(200, "0.05"), Tier(INF, "0.03")], tier_mode="graduated"
            ),
            Item.priced(
                "messages",
                tiers=[Tier(100, "0.08"), Tier(1000, "0.06", flat_amount=5), Tier(INF, "0.04")],
                tier_mode="volume",
            ),
        ],
    ),
    Product(
        "top_up",
        add_on=True,
        items=[
            Item.priced(
                "messages", price=5, billing_units=500, billing="prepaid", interval="one_off"
            )
        ],
    ),
    Product(
        "team",
        items=[
            Item.feature("messages", included=40, reset="week", reset_count=2, per_entity="seats")
        ],
    ),
)


def test_toml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "autumn.toml"
    path.write_text(FULL.to_toml())
    assert Catalog.from_file(path) == FULL
    assert Catalog.from_toml(FULL.to_toml()).to_toml() == FULL.to_toml()


def test_bad_toml_is_an_invalid_catalog(tmp_path: Path) -> None:
    path = tmp_path / "autumn.toml"
    path.write_text("[[products]]\nid = 'p'\n[[products.items]]\nfeature_id = 'ghost'\n")
    with pytest.raises(InvalidCatalog, match="product 'p', item 'ghost'"):
        Catalog.from_file(path)
    path.write_text("not = [toml")
    with pytest.raises(InvalidCatalog):
        Catalog.from_file(path)
    with pytest.raises(InvalidCatalog):
        Catalog.from_file(tmp_path / "missing.toml")


def test_changed_products_held_by_customers_get_a_new_version(new_store: StoreFactory) -> None:
    store = new_store()
    v1 = cat(Product("basic", items=[Item.feature("messages", included=10)]))
    billing = Autumn(v1, store=store)
    billing.attach("holder", "basic")
    v2 = cat(Product("basic", items=[Item.feature("messages", included=99)]))
    billing = Autumn(v2, store=store)
    billing.attach("newcomer", "basic")
    holder = billing.customers.get("holder")
    newcomer = billing.customers.get("newcomer")
    assert (holder.products[0].version, holder.features["messages"].granted) == (1, 10)
    assert (newcomer.products[0].version, newcomer.features["messages"].granted) == (2, 99)
    # Re-syncing the same definition does not bump the version.
    billing = Autumn(v2, store=store)
    assert billing.customers.get("newcomer").products[0].version == 2


def test_unheld_products_are_updated_in_place(new_store: StoreFactory) -> None:
    store = new_store()
    Autumn(cat(Product("basic", items=[Item.feature("messages", included=10)])), store=store)
    billing = Autumn(
        cat(Product("basic", items=[Item.feature("messages", included=20)])), store=store
    )
    assert billing.attach("c", "basic").product.version == 1  # type: ignore[union-attr]
