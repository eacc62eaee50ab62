"""A catalog is valid or refused at construction: every key type- and range-checked, the
product, item and key named, and nothing a later call could trip on is let through."""

from __future__ import annotations

from pathlib import Path

import pytest

from autumn_core import (
    Catalog,
    Feature,
    FreeTrial,
    InvalidCatalog,
    Item,
    Price,
    Product,
    Rollover,
)

FEATURES = """
[[features]]
id = "messages"
type = "metered"

[[features]]
id = "seats"
type = "allocated"
"""


def product(body: str, items: str = "") -> str:
    return f'{FEATURES}\n[[products]]\nid = "pro"\n{body}\n{items}'


def item(body: str) -> str:
    return f'[[products.items]]\nfeature_id = "messages"\n{body}\n'


PRICED = 'kind = "priced"\nprice = 1\nbilling = "usage"\ninterval = "month"\n'

REFUSED = [
    # Strings are never read as booleans by truthiness.
    (product('add_on = "false"'), "product 'pro': add_on must be true or false"),
    (product('default = "no"'), "product 'pro': default must be true or false"),
    (
        product("", item('unlimited = "yes"')),
        "product 'pro', item 'messages': unlimited must be true or false",
    ),
    (
        'allow_paid_default = "no"\n' + product("price = { amount = 5 }"),
        "allow_paid_default must be true or false",
    ),
    (
        product("free_trial = { length = 7, card_required = 0 }"),
        "product 'pro', free_trial: card_required must be true or false",
    ),
    # Counts the calendar cannot keep.
    (
        product("", item('included = 5\nreset = "month"\nreset_count = 1.5')),
        "product 'pro', item 'messages': reset_count must be an integer",
    ),
    (
        product("", item('included = 5\nreset = "month"\nreset_count = 1_000_000_000')),
        "product 'pro', item 'messages': reset_count must be an integer in 1..1000",
    ),
    (
        product("", item(PRICED + "interval_count = 1_000_000")),
        "product 'pro', item 'messages': interval_count must be an integer in 1..100",
    ),
    (
        product("price = { amount = 5, interval = 'year', interval_count = 50 }"),
        "product 'pro': price a cycle of 50 year is longer than 120 months",
    ),
    (
        product("free_trial = { length = 1_000_000_000, duration = 'year' }"),
        "product 'pro', free_trial: free trial length must be an integer in 1..10",
    ),
    (product("free_trial = { length = 0 }"), "free trial length must be an integer in 1..3660"),
    # Wrong shapes.
    (FEATURES.replace('type = "metered"', 'type = "metered"\ncosts = ["a"]'), "costs belong"),
    (
        '[[features]]\nid = "credits"\ntype = "credit_system"\ncosts = ["messages"]',
        "feature 'credits': costs must be a table of feature = cost",
    ),
    ("features = 5", "features must be an array of tables, got 5"),
    ('features = ["messages"]', "feature #1 must be a table, got 'messages'"),
    ("[[features]]\nname = 'x'", "feature #1: id is missing"),
    (product("price = 20"), "product 'pro', price must be a table, got 20"),
    (product("", item("included = 'lots'")), "item 'messages': included must be a finite number"),
    (product("", item("included = [1]")), "item 'messages': included must be a number"),
    (product("", "[[products.items]]\nincluded = 1"), "product 'pro', item #1: feature_id"),
    (product("addon = true"), "product 'pro': unknown key 'addon'"),
    (product("", item('kind = "feature"\nprice = 3')), "item 'messages': unknown key 'price'"),
    # Rollover caps.
    (
        product("", item('included = 5\nreset = "month"\nrollover = { max = -1 }')),
        "product 'pro', item 'messages': rollover max must be >= 0",
    ),
    (
        product("", item('included = 5\nreset = "month"\nrollover = { max_percent = 150 }')),
        "rollover max_percent must be in 0..100",
    ),
    (
        product("", item('included = 5\nreset = "month"\nrollover = { expires_after_months = 0 }')),
        "rollover expires_after_months must be an integer in 1..120",
    ),
    # Ids with whitespace or NUL.
    (
        product("").replace('id = "pro"', 'id = "pro plan"'),
        "product id must not contain whitespace",
    ),
    (FEATURES.replace('"messages"', '"mess\\u0000ages"'), "feature id must not contain"),
    (
        FEATURES.replace('type = "metered"', 'type = "metered"\nevent_names = ["a b"]'),
        "feature 'messages': event name must not contain whitespace",
    ),
]


@pytest.mark.parametrize(("toml", "message"), REFUSED)
def test_a_bad_catalog_is_refused_naming_where_and_what(toml: str, message: str) -> None:
    # given a catalog with one bad key; when it is read; then one InvalidCatalog names it
    with pytest.raises(InvalidCatalog) as info:
        Catalog.from_toml(toml)
    assert message in info.value.message
    assert info.value.code == "invalid_catalog"


def test_the_same_rules_hold_for_catalogs_built_in_python() -> None:
    features = [Feature.metered("messages")]
    monthly = Item.feature("messages", 5, reset="month", reset_count=10**9)
    with pytest.raises(InvalidCatalog, match="product 'pro', item 'messages': reset_count"):
        Catalog(features, [Product("pro", items=[monthly])])
    with pytest.raises(InvalidCatalog, match="product 'pro': add_on must be true or false"):
        Catalog(features, [Product("pro", add_on="false")])  # type: ignore[arg-type]
    with pytest.raises(InvalidCatalog, match=r"interval_count must be an integer in 1\.\.100"):
        Catalog(features, [Product("pro", price=Price(5, interval_count=10**6))])
    capped = Item.feature("messages", 5, reset="month", rollover=Rollover(max_percent=101))
    with pytest.raises(InvalidCatalog, match=r"max_percent must be in 0\.\.100"):
        Catalog(features, [Product("pro", items=[capped])])
    with pytest.raises(InvalidCatalog, match="free trial length"):
        FreeTrial(10**9, duration="year")
    with pytest.raises(InvalidCatalog, match="allow_paid_default"):
        Catalog(features, [], allow_paid_default="no")  # type: ignore[arg-type]
    with pytest.raises(InvalidCatalog, match="costs must be a table"):
        Feature.credit_system("credits", costs=["messages"])  # type: ignore[arg-type]


def test_a_non_utf8_file_is_refused_naming_the_file_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[[features]]\nid = "messages"\nname = "Nachrichten \xfc"\n'.encode("latin-1"))
    with pytest.raises(InvalidCatalog) as info:
        Catalog.from_file(path)
    assert info.value.message == (
        f"catalog {path} is not UTF-8 text (byte 0xfc at offset 49); save it as UTF-8"
    )


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "autumn.toml"
    path.write_text(product("add_on = 'false'"))
    with pytest.raises(InvalidCatalog) as info:
        Catalog.from_file(path)
    assert info.value.message.startswith(f"catalog {path}: product 'pro': add_on")
    with pytest.raises(InvalidCatalog, match=r"[iI]s a directory"):
        Catalog.from_file(tmp_path)
    with pytest.raises(InvalidCatalog, match="must be text"):
        Catalog.from_toml(b"x = 1")  # type: ignore[arg-type]


def test_a_valid_catalog_with_every_kind_of_key_is_accepted() -> None:
    toml = product(
        'name = "Pro"\ngroup = "main"\nprice = { amount = "20", interval = "month" }\n'
        'free_trial = { length = 14, duration = "day", card_required = false }',
        item('included = 100\nreset = "month"\nrollover = { max_percent = 50 }')
        + "[[products.items]]\nfeature_id = 'seats'\nkind = 'priced'\nprice = 10\n"
        "billing = 'usage'\ninterval = 'month'\nincluded = 3\n",
    )
    catalog = Catalog.from_toml(toml)
    pro = catalog.product("pro")
    assert pro is not None and pro.free_trial == FreeTrial(14, card_required=False)
    assert Catalog.from_toml(catalog.to_toml()) == catalog
