"""autumn-sdk 1.2.0 through ``autumn serve``: balances.delete, billing.preview_update,
events.aggregate, and plans with their stored versions, on every store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from autumn_sdk import Autumn as Sdk
from autumn_sdk.errors import AutumnDefaultError

from autumn_core import Catalog, Feature, Item, Price, Product
from tests.pg_cluster import PgCluster
from tests.wire.conftest import CATALOG, Server, new_id, serve, start_server, stop_server


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from serve(request, tmp_path_factory)


def test_balances_delete_removes_a_grant_and_refuses_a_plan_balance(
    sdk: Sdk, server: Server
) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid)
    # given the free plan's 100 messages and a grant of 40
    sdk.balances.create(customer_id=cid, feature_id="messages", included_grant=40)
    before = sdk.check(customer_id=cid, feature_id="messages").balance
    assert before is not None and before.granted == 140
    # when the grant is deleted by its interval (never resets = one_off)
    assert sdk.balances.delete(customer_id=cid, feature_id="messages", interval="one_off").success
    # then only the plan's 100 remain
    after = sdk.check(customer_id=cid, feature_id="messages").balance
    assert after is not None and (after.granted, after.remaining) == (100, 100)
    # a plan's own balance is refused with 409, an absent one with 404
    for body, status in (({"feature_id": "messages"}, 409), ({"feature_id": "seats"}, 409)):
        r = server.post("balances.delete", {"customer_id": cid, **body})
        assert (r.status_code, r.json()["code"]) == (status, "invalid_request")
    r = server.post("balances.delete", {"customer_id": cid, "balance_id": "row_nope"})
    assert r.status_code == 404 and "Balance not found" in r.json()["message"]
    r = server.post("balances.delete", {"customer_id": cid})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_inputs")
    assert sdk.check(customer_id=cid, feature_id="messages").balance.granted == 100  # type: ignore[union-attr]


def test_preview_update_of_a_cancel_and_an_upgrade(sdk: Sdk) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid)
    sdk.billing.attach(customer_id=cid, plan_id="premium")
    # an immediate cancel previews a prorated credit of at most the $50 paid
    now = sdk.billing.preview_update(
        customer_id=cid, plan_id="premium", cancel_action="cancel_immediately"
    )
    assert now.intent == "cancel_immediately"
    assert -50 <= now.total < 0
    assert now.total == sum(line.total for line in now.line_items)
    assert [o.plan_id for o in now.outgoing] == ["premium"]
    # at the end of the cycle nothing is due now
    later = sdk.billing.preview_update(
        customer_id=cid, plan_id="premium", cancel_action="cancel_end_of_cycle"
    )
    assert (later.intent, later.total, later.line_items) == ("cancel_end_of_cycle", 0, [])
    assert later.outgoing[0].expires_at is not None
    # nothing changed: premium is still held and not canceling
    subs = sdk.customers.get(customer_id=cid).subscriptions
    assert [(s.plan_id, s.canceled_at) for s in subs] == [("premium", None)]
    # a plan change previews like preview_attach, with its intent
    other = new_id()
    sdk.customers.get_or_create(customer_id=other)
    up = sdk.billing.preview_update(customer_id=other, plan_id="premium")
    assert (up.intent, up.total) == ("update_plan", 50)


def test_events_aggregate_per_day_and_per_hour(sdk: Sdk, server: Server) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid)
    sdk.track(customer_id=cid, feature_id="messages", value=3, properties={"model": "a"})
    sdk.track(customer_id=cid, event_name="chat", value=2, properties={"model": "b"})
    week = sdk.events.aggregate(customer_id=cid, feature_id="messages", range="7d")
    assert len(week.list) == 8  # the day seven days ago through today, zeros included
    assert [b.values["messages"] for b in week.list] == [0] * 7 + [5]
    assert (week.total["messages"].count, week.total["messages"].sum) == (2, 5)
    day = sdk.events.aggregate(
        customer_id=cid,
        feature_id=["messages"],
        range="24h",
        bin_size="hour",
        group_by="properties.model",
    )
    assert len(day.list) in (24, 25) and day.list[-1].values == {"messages": 5}
    assert day.list[-1].grouped_values == {"messages": {"a": 3, "b": 2}}
    counted = server.post(
        "events.aggregate",
        {"customer_id": cid, "feature_id": "messages", "range": "7d", "measure": "count"},
    ).json()
    assert counted["list"][-1]["values"] == {"messages": 2}
    r = server.post(
        "events.aggregate", {"customer_id": cid, "feature_id": "messages", "range": "1bc"}
    )
    assert (r.status_code, r.json()["code"]) == (400, "invalid_inputs")


def test_plans_report_their_stored_version_and_creation_time(sdk: Sdk) -> None:
    plans = {p.id: p for p in sdk.plans.list().list}
    assert plans["pro"].version == 1
    assert plans["pro"].created_at > 1_700_000_000_000  # stored at the server's first start
    one = sdk.plans.get(plan_id="pro", version=1)
    assert (one.version, one.created_at) == (1, plans["pro"].created_at)
    with pytest.raises(AutumnDefaultError) as err:
        sdk.plans.get(plan_id="pro", version=2)
    assert err.value.status_code == 404


# -- a catalog change while customers hold a plan: version 2 -----------------------------------
def _old_catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages", name="Messages", event_names=["chat"])],
        products=[
            Product("pro", name="Pro", price=Price(15), items=[Item.feature("messages", 700)])
        ],
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_changed_plan_is_version_2_and_version_1_can_still_be_attached(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        db = f"sqlite:///{tmp_path}/versions.db"
    else:
        cluster: PgCluster = request.getfixturevalue("wire_pg")
        db = cluster.create_database(f"ver_{uuid.uuid4().hex[:8]}")
    # given pro at $15 (version 1) held by a customer, in the database the server will open
    import autumn_core

    with autumn_core.open(db, catalog=_old_catalog()) as old:
        old.attach("early", "pro")
        v1_created = old.products.versions("pro")[0].created_at
    # when the server starts with the new catalog (pro at $20)
    srv = start_server(db)
    try:
        sdk = srv.sdk()
        listed = {p.id: p for p in sdk.plans.list().list}
        every = [  # all_versions is in the API, not in the SDK's list() signature
            (p["id"], p["version"])
            for p in srv.post("plans.list", {"all_versions": True}).json()["list"]
        ]
        v1 = sdk.plans.get(plan_id="pro", version=1)
        # then pro is version 2 and version 1 keeps its price and creation time
        assert listed["pro"].version == 2 and listed["pro"].price.amount == 20  # type: ignore[union-attr]
        assert ("pro", 1) in every and ("pro", 2) in every
        assert v1.price is not None and v1.price.amount == 15
        assert v1.created_at == int(v1_created.timestamp() * 1000)
        assert listed["pro"].created_at > v1.created_at
        # and a new customer can be attached to version 1 at its price
        cid = new_id()
        sdk.customers.get_or_create(customer_id=cid)
        assert sdk.billing.preview_attach(customer_id=cid, plan_id="pro", version=1).total == 15
        sdk.billing.attach(customer_id=cid, plan_id="pro", version=1)
        got = sdk.check(customer_id=cid, feature_id="messages").balance
        assert got is not None and got.granted == 700  # v1's 700 (pro replaced free)
    finally:
        stop_server(srv)
    assert CATALOG.exists()
