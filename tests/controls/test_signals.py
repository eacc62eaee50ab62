"""Limit-reached and usage-alert signals, once per crossing (docs/rules.md BC4, BC6),
on every store."""

from __future__ import annotations

import contextlib
import threading
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import Autumn, InsufficientBalance, ManualClock
from autumn_core.outbound import BALANCES_LIMIT_REACHED, BALANCES_USAGE_ALERT_TRIGGERED
from tests.conftest import T0


def of(emitted: list[Any], kind: str) -> list[tuple[Any, ...]]:
    out = []
    for e in emitted:
        if e.type != kind:
            continue
        if kind == BALANCES_LIMIT_REACHED:
            out.append((e.customer_id, e.entity_id, e.data["feature_id"], e.data["limit_type"]))
        else:
            alert = e.data["usage_alert"]
            out.append((e.entity_id, e.data["feature_id"], alert["name"], alert["threshold"]))
    return out


@pytest.fixture
def u1(billing: Autumn) -> Autumn:
    billing.customers.create("u1")  # free: 100 messages, 1000 tokens a month
    return billing


def test_bc6_balance_exhausted_fires_once_per_crossing(
    u1: Autumn, emitted: list[Any], clock: ManualClock
) -> None:
    u1.track("u1", "messages", value=60)
    assert of(emitted, BALANCES_LIMIT_REACHED) == []
    u1.track("u1", "messages", value=60)  # capped at 100: exhausted
    u1.track("u1", "messages", value=5)  # still exhausted: no second signal
    assert of(emitted, BALANCES_LIMIT_REACHED) == [("u1", None, "messages", "included")]
    u1.track("u1", "messages", value=-10)  # a refund arms it again
    u1.track("u1", "messages", value=10)
    assert len(of(emitted, BALANCES_LIMIT_REACHED)) == 2
    clock.set(T0.replace(month=4, day=11))  # the monthly reset arms it too
    u1.track("u1", "messages", value=100)
    assert len(of(emitted, BALANCES_LIMIT_REACHED)) == 3


def test_bc6_the_limit_type_names_what_was_hit(u1: Autumn, emitted: list[Any]) -> None:
    u1.customers.update(
        "u1",
        billing_controls={
            "usage_limits": [{"feature_id": "tokens", "limit": 10, "interval": "day"}]
        },
    )
    u1.track("u1", "tokens", value=10)
    u1.track("u1", "tokens", value=10)  # still at the limit: no second signal
    u1.attach("u1", "payg")
    u1.customers.update(
        "u1",
        billing_controls={
            "spend_limits": [{"feature_id": "api_calls", "enabled": True, "overage_limit": 5}]
        },
    )
    u1.track("u1", "api_calls", value=500)
    u1.track("u1", "api_calls", value=1)
    assert of(emitted, BALANCES_LIMIT_REACHED) == [
        ("u1", None, "tokens", "usage_limit"),
        ("u1", None, "api_calls", "spend_limit"),
    ]


def test_bc6_a_hold_that_takes_the_last_units_signals(u1: Autumn, emitted: list[Any]) -> None:
    u1.check("u1", "messages", required_balance=100, lock={"lock_id": "a"})
    u1.balances.finalize("a", "confirm")  # still exhausted: no second signal
    assert of(emitted, BALANCES_LIMIT_REACHED) == [("u1", None, "messages", "included")]


ALERTS = [
    {"feature_id": "tokens", "threshold": 80, "threshold_type": "usage_percentage", "name": "80%"},
    {"feature_id": "tokens", "threshold": 500, "threshold_type": "usage", "name": "500"},
    {"feature_id": "tokens", "threshold": 100, "threshold_type": "remaining", "name": "low"},
    {
        "feature_id": "tokens",
        "threshold": 50,
        "threshold_type": "remaining_percentage",
        "name": "half",
    },
]


def test_bc4_alerts_fire_once_per_crossing(u1: Autumn, emitted: list[Any]) -> None:
    u1.customers.update("u1", billing_controls={"usage_alerts": ALERTS})
    u1.track("u1", "tokens", value=499)
    assert of(emitted, BALANCES_USAGE_ALERT_TRIGGERED) == []
    u1.track("u1", "tokens", value=1)  # usage 500: "500" and remaining 50 %: "half"
    u1.track("u1", "tokens", value=300)  # usage 800: "80%"
    u1.track("u1", "tokens", value=100)  # remaining 100: "low"
    u1.track("u1", "tokens", value=50)
    names = [a[2] for a in of(emitted, BALANCES_USAGE_ALERT_TRIGGERED)]
    assert names == ["500", "half", "80%", "low"]
    # below the threshold again (a refund), then across it: once more
    u1.track("u1", "tokens", value=-200)
    u1.track("u1", "tokens", value=200)
    names = [a[2] for a in of(emitted, BALANCES_USAGE_ALERT_TRIGGERED)]
    assert names == ["500", "half", "80%", "low", "80%", "low"]
    assert of(emitted, BALANCES_USAGE_ALERT_TRIGGERED)[0][3] == Decimal(500)


def test_bc4_an_entity_alert_and_a_usage_limit_basis(u1: Autumn, emitted: list[Any]) -> None:
    u1.entities.create(
        "u1",
        "ws",
        "seats",
        billing_controls={
            "usage_limits": [{"feature_id": "tokens", "limit": 40, "interval": "day"}],
            "usage_alerts": [
                {
                    "feature_id": "tokens",
                    "threshold": 50,
                    "threshold_type": "usage_percentage",
                    "basis": "usage_limit",
                    "name": "half the daily cap",
                }
            ],
        },
    )
    u1.track("u1", "tokens", value=19, entity_id="ws")
    u1.track("u1", "tokens", value=500)  # the customer's own usage is not the entity's window
    u1.track("u1", "tokens", value=1, entity_id="ws")
    assert of(emitted, BALANCES_USAGE_ALERT_TRIGGERED) == [
        ("ws", "tokens", "half the daily cap", Decimal(50))
    ]


def test_bc4_bc6_balance_edits_signal_the_crossings_they_make(
    u1: Autumn, emitted: list[Any], clock: ManualClock
) -> None:
    # given an 80 % usage alert on 1,000 tokens
    u1.customers.update("u1", billing_controls={"usage_alerts": [ALERTS[0]]})
    # when balances.set takes usage to 90 %, then to 100 %
    u1.balances.set("u1", "tokens", remaining=100)
    u1.balances.set("u1", "tokens", remaining=0)
    # then each crossing signalled once, from the edit that made it
    assert [a[2] for a in of(emitted, BALANCES_USAGE_ALERT_TRIGGERED)] == ["80%"]
    assert of(emitted, BALANCES_LIMIT_REACHED) == [("u1", None, "tokens", "included")]
    # and a track while still exhausted signals nothing more
    u1.track("u1", "tokens", value=1)
    assert len(of(emitted, BALANCES_LIMIT_REACHED)) == 1
    # given a grant of 500: no longer exhausted
    u1.balances.grant("u1", "tokens", amount=500)
    assert u1.customers.get("u1").features["tokens"].remaining == Decimal(500)
    # when the grant is deleted
    u1.balances.delete("u1", "tokens", interval=None)  # the grant (the product's row resets)
    # then the balance is exhausted again: a second crossing
    assert of(emitted, BALANCES_LIMIT_REACHED) == [("u1", None, "tokens", "included")] * 2


def test_bc4_bc6_signals_fire_once_under_concurrency(u1: Autumn) -> None:
    # given an alert at 50 % and 8 threads each tracking 1 message 20 times (160 > 100)
    u1.customers.update(
        "u1",
        billing_controls={
            "usage_alerts": [
                {"feature_id": "messages", "threshold": 50, "threshold_type": "usage_percentage"}
            ]
        },
    )
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(20):
            with contextlib.suppress(InsufficientBalance):
                u1.track("u1", "messages", value=1, overage="reject")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then the committed outbox holds the alert once and the limit reached once (a store may
    # run a call again after a lost race: what an attempt emitted and rolled back is not there)
    committed = [entry.event for entry in u1.webhooks.list(limit=1000)]
    assert len(of(committed, BALANCES_USAGE_ALERT_TRIGGERED)) == 1
    assert of(committed, BALANCES_LIMIT_REACHED) == [("u1", None, "messages", "included")]
    assert u1.customers.get("u1").features["messages"].usage == Decimal(100)
