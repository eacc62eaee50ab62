"""Billing controls are set, checked, stored and returned (docs/rules.md BC1)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import (
    AutoTopup,
    Autumn,
    BillingControls,
    FeatureNotFound,
    InvalidRequest,
    OverageAllowed,
    PurchaseLimit,
    SpendLimit,
    UsageAlert,
    UsageLimit,
    from_dict,
    to_dict,
)

FULL = {
    "overage_allowed": [{"feature_id": "messages", "enabled": True}],
    "spend_limits": [{"feature_id": "api_calls", "enabled": True, "overage_limit": 5000}],
    "usage_limits": [{"feature_id": "tokens", "limit": 50, "interval": "day"}],
    "usage_alerts": [
        {
            "feature_id": "messages",
            "threshold": 80,
            "threshold_type": "usage_percentage",
            "name": "80% used",
        }
    ],
    "auto_topups": [
        {
            "feature_id": "tokens",
            "enabled": True,
            "threshold": 500,
            "quantity": 1000,
            "purchase_limit": {"interval": "month", "limit": 5},
        }
    ],
}

EXPECTED = BillingControls(
    overage_allowed=(OverageAllowed("messages", True),),
    spend_limits=(SpendLimit("api_calls", True, Decimal(5000)),),
    usage_limits=(UsageLimit("tokens", Decimal(50), "day"),),
    usage_alerts=(UsageAlert("messages", Decimal(80), "usage_percentage", True, "80% used"),),
    auto_topups=(
        AutoTopup("tokens", Decimal(500), Decimal(1000), True, PurchaseLimit("month", 5, 1)),
    ),
)


def test_bc1_controls_set_on_create_are_stored_and_returned(billing: Autumn, reopen: Any) -> None:
    # given a customer created with Autumn's billing_controls shape
    created = billing.customers.create("u1", billing_controls=FULL)
    # then the checked record comes back, and is what the store kept
    assert created.billing_controls == EXPECTED
    assert reopen(billing).customers.get("u1").billing_controls == EXPECTED


def test_bc1_a_record_is_accepted_as_is(billing: Autumn) -> None:
    assert billing.customers.create("u1", billing_controls=EXPECTED).billing_controls == EXPECTED


def test_bc1_update_replaces_only_the_lists_it_names(billing: Autumn, reopen: Any) -> None:
    # given a customer with every control
    billing.customers.create("u1", billing_controls=FULL)
    # when an update names only usage_limits
    updated = billing.customers.update(
        "u1",
        billing_controls={
            "usage_limits": [
                {"feature_id": "tokens", "limit": "7.5", "interval": "hour", "anchor": "utc"}
            ]
        },
    )
    # then that list is replaced and the others are kept (Autumn's merge)
    expected = BillingControls(
        overage_allowed=EXPECTED.overage_allowed,
        spend_limits=EXPECTED.spend_limits,
        usage_limits=(UsageLimit("tokens", Decimal("7.5"), "hour", True, "utc"),),
        usage_alerts=EXPECTED.usage_alerts,
        auto_topups=EXPECTED.auto_topups,
    )
    assert updated.billing_controls == expected
    assert reopen(billing).customers.get("u1").billing_controls == expected
    # and None clears them all
    assert billing.customers.update("u1", billing_controls=None).billing_controls == (
        BillingControls()
    )


def test_bc1_get_or_create_fills_controls_only_when_there_are_none(billing: Autumn) -> None:
    billing.customers.create("u1", billing_controls={"overage_allowed": FULL["overage_allowed"]})
    again = billing.customers.create("u1", billing_controls=FULL)
    assert again.billing_controls == BillingControls(
        overage_allowed=(OverageAllowed("messages", True),)
    )


def test_bc1_entity_controls_on_create_and_update(billing: Autumn, reopen: Any) -> None:
    billing.customers.create("org")
    entity_controls = {k: v for k, v in FULL.items() if k != "auto_topups"}
    created = billing.entities.create("org", "ws-a", "seats", billing_controls=entity_controls)
    expected = BillingControls(
        overage_allowed=EXPECTED.overage_allowed,
        spend_limits=EXPECTED.spend_limits,
        usage_limits=EXPECTED.usage_limits,
        usage_alerts=EXPECTED.usage_alerts,
    )
    assert created.billing_controls == expected
    # when the entity's spend limits are updated
    updated = billing.entities.update(
        "org",
        "ws-a",
        billing_controls={"spend_limits": [{"feature_id": "api_calls", "overage_limit": 1}]},
    )
    # then only that list changed, on the entity only
    expected2 = BillingControls(
        overage_allowed=EXPECTED.overage_allowed,
        spend_limits=(SpendLimit("api_calls", False, Decimal(1)),),
        usage_limits=EXPECTED.usage_limits,
        usage_alerts=EXPECTED.usage_alerts,
    )
    assert updated.billing_controls == expected2
    again = reopen(billing)
    assert again.entities.get("org", "ws-a").billing_controls == expected2
    assert again.customers.get("org").billing_controls == BillingControls()
    assert billing.entities.update("org", "ws-a", name="A").name == "A"


def test_bc1_entities_cannot_have_auto_topups(billing: Autumn) -> None:
    billing.customers.create("org")
    with pytest.raises(InvalidRequest, match="auto_topups"):
        billing.entities.create(
            "org", "ws-a", "seats", billing_controls={"auto_topups": FULL["auto_topups"]}
        )
    assert billing.entities.list("org") == []


BAD: list[tuple[dict[str, Any], str]] = [
    (
        {"usage_limits": [{"feature_id": "tokens", "limit": 5, "interval": "fortnight"}]},
        "fortnight",
    ),
    ({"usage_limits": [{"feature_id": "tokens", "limit": -1, "interval": "day"}]}, "-1"),
    ({"usage_limits": [{"feature_id": "tokens", "limit": "x", "interval": "day"}]}, "'x'"),
    ({"usage_alerts": [{"feature_id": "tokens", "threshold": 5, "threshold_type": "pct"}]}, "pct"),
    (
        {
            "usage_alerts": [
                {"feature_id": "tokens", "threshold": 101, "threshold_type": "remaining_percentage"}
            ]
        },
        "101",
    ),
    ({"spend_limits": [{"overage_limit": 5}]}, "feature_id"),
    ({"spend_limits": [{"feature_id": "tokens", "enabled": "yes"}]}, "'yes'"),
    ({"overage_allowed": [{"feature_id": "tokens"}, {"feature_id": "tokens"}]}, "'tokens'"),
    ({"auto_topups": [{"feature_id": "tokens", "threshold": 1, "quantity": 0}]}, "0"),
    (
        {
            "auto_topups": [
                {
                    "feature_id": "tokens",
                    "threshold": 1,
                    "quantity": 5,
                    "purchase_limit": {"interval": "month", "limit": 1.5},
                }
            ]
        },
        "1.5",
    ),
    ({"overage_allowed": [{"feature_id": "tokens", "colour": "red"}]}, "colour"),
    ({"limits": []}, "limits"),
    ({"usage_limits": {"feature_id": "tokens"}}, "must be a list"),
    ({"overage_allowed": [{"feature_id": "sso", "enabled": True}]}, "boolean"),
]


@pytest.mark.parametrize(("bad", "named"), BAD)
def test_bc1_bad_controls_are_refused_naming_the_value_and_change_nothing(
    billing: Autumn, bad: dict[str, Any], named: str
) -> None:
    billing.customers.create("u1", billing_controls=FULL)
    with pytest.raises(InvalidRequest, match=named.replace("(", r"\(")):
        billing.customers.update("u1", billing_controls=bad, name="changed")
    after = billing.customers.get("u1")
    assert after.billing_controls == EXPECTED and after.name is None
    with pytest.raises(InvalidRequest):
        billing.customers.create("u2", billing_controls=bad)
    assert [c.id for c in billing.customers.list()] == ["u1"]


def test_bc1_unknown_feature_is_feature_not_found(billing: Autumn) -> None:
    with pytest.raises(FeatureNotFound, match="'nope'"):
        billing.customers.create(
            "u1", billing_controls={"overage_allowed": [{"feature_id": "nope"}]}
        )


def test_bc1_to_dict_round_trips(billing: Autumn) -> None:
    customer = billing.customers.create("u1", billing_controls=FULL)
    data = to_dict(customer)
    json.dumps(data)
    assert data["billing_controls"]["usage_limits"] == [
        {
            "feature_id": "tokens",
            "limit": "50",
            "interval": "day",
            "enabled": True,
            "anchor": "billing_cycle",
        }
    ]
    assert from_dict(type(customer), data) == customer
