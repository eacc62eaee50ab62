"""Billing controls and locks through autumn-sdk 1.2.0 against the real ``autumn serve``
console script, on every store (docs/rules.md BC1-BC7)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from autumn_sdk import Autumn as Sdk
from autumn_sdk.errors import AutumnDefaultError

from tests.pg_cluster import PgCluster
from tests.wire.conftest import CATALOG, SECRET, Server, free_port, new_id, stop_server

AUTUMN = Path(sys.executable).with_name("autumn")


def start_autumn_serve(db: str) -> Server:
    port = free_port()
    env = {**os.environ, "AUTUMN_SECRET_KEY": SECRET}
    cmd = [str(AUTUMN), "--db", db, "--catalog", str(CATALOG), "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"autumn serve exited: {out}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{url}/v1/features.list", timeout=2)
            return Server(url, proc, db)
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("autumn serve did not start within 60 s")
        time.sleep(0.1)


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    kind = request.param
    if kind == "memory":
        db = "memory://"
    elif kind == "sqlite":
        db = f"sqlite:///{tmp_path_factory.mktemp('controls')}/billing.db"
    else:
        cluster: PgCluster = request.getfixturevalue("wire_pg")
        db = cluster.create_database(f"controls_{uuid.uuid4().hex[:8]}")
    srv = start_autumn_serve(db)
    try:
        yield srv
    finally:
        stop_server(srv)


def test_lock_then_confirm_release_and_double_finalize(sdk: Sdk) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid)  # free: 100 messages
    # given a hold of 40
    held = sdk.check(
        customer_id=cid,
        feature_id="messages",
        required_balance=40,
        lock={"lock_id": f"{cid}-a", "enabled": True},
    )
    assert held.allowed is True and held.balance is not None
    assert held.balance.remaining == 60
    # then another hold of 61 does not fit, one of 60 does
    denied = sdk.check(
        customer_id=cid,
        feature_id="messages",
        required_balance=61,
        lock={"lock_id": f"{cid}-b", "enabled": True, "overage_behavior": "cap"},
    )
    assert denied.allowed is True  # "cap" holds what fits: 60
    # when the first is confirmed below the hold and the second released
    assert sdk.balances.finalize(lock_id=f"{cid}-a", action="confirm", override_value=25).success
    assert sdk.balances.finalize(lock_id=f"{cid}-b", action="release").success
    # then only the confirmed value is used, and a second finalize changes nothing
    assert sdk.balances.finalize(lock_id=f"{cid}-a", action="confirm", override_value=25).success
    balance = sdk.customers.get(customer_id=cid).balances["messages"]
    assert (balance.remaining, balance.usage) == (75, 25)
    # and an unknown lock is a 404
    with pytest.raises(AutumnDefaultError) as err:
        sdk.balances.finalize(lock_id=f"{cid}-nope", action="confirm")
    assert "lock_not_found" in str(err.value.body)


def test_a_lock_that_expired_is_refused(server: Server, sdk: Sdk) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid)
    expires = int(time.time() * 1000) + 1500
    sdk.check(
        customer_id=cid,
        feature_id="messages",
        required_balance=30,
        lock={"lock_id": f"{cid}-x", "enabled": True, "expires_at": expires},
    )
    while time.time() * 1000 <= expires + 50:
        time.sleep(0.1)
    assert sdk.customers.get(customer_id=cid).balances["messages"].remaining == 100
    r = server.post("balances.finalize", {"lock_id": f"{cid}-x", "action": "confirm"})
    assert (r.status_code, r.json()["code"]) == (409, "lock_expired")
    too_late = server.post(
        "balances.check",
        {
            "customer_id": cid,
            "feature_id": "messages",
            "lock": {"lock_id": f"{cid}-y", "enabled": True, "expires_at": 1},
        },
    )
    assert too_late.status_code == 400 and "expires_at" in too_late.json()["message"]
    generated = server.post(
        "balances.check",
        {"customer_id": cid, "feature_id": "messages", "lock": {"enabled": True}},
    ).json()
    assert generated["allowed"] and generated["lock_id"].startswith("lck_")
    assert generated["balance"]["held"] == 1


def test_billing_controls_on_customers_and_entities(sdk: Sdk) -> None:
    cid = new_id()
    created = sdk.customers.get_or_create(
        customer_id=cid,
        billing_controls={
            "usage_limits": [{"feature_id": "messages", "limit": 10, "interval": "day"}],
            "usage_alerts": [
                {"feature_id": "messages", "threshold": 80, "threshold_type": "usage_percentage"}
            ],
        },
    )
    assert created.billing_controls.usage_limits is not None
    [limit] = created.billing_controls.usage_limits
    assert (limit.feature_id, limit.limit, limit.interval) == ("messages", 10, "day")
    # the usage limit caps tracks and checks
    assert sdk.track(customer_id=cid, feature_id="messages", value=8).value == 8
    assert sdk.check(customer_id=cid, feature_id="messages", required_balance=3).allowed is False
    # the customer reports the usage of the limit's current window, as Autumn does
    got = sdk.customers.get_or_create(customer_id=cid)
    assert got.billing_controls.usage_limits is not None
    assert got.billing_controls.usage_limits[0].usage == 8
    # an update replaces the lists it names
    updated = sdk.customers.update(
        customer_id=cid,
        billing_controls={
            "overage_allowed": [{"feature_id": "messages", "enabled": True}],
            "usage_limits": [],
        },
    )
    assert updated.billing_controls.usage_limits is None
    assert updated.billing_controls.usage_alerts is not None
    assert sdk.check(customer_id=cid, feature_id="messages", required_balance=500).allowed
    # entities carry their own
    entity = sdk.entities.create(
        customer_id=cid,
        entity_id="ws",
        feature_id="seats",
        billing_controls={
            "spend_limits": [{"feature_id": "messages", "enabled": True, "overage_limit": 5}]
        },
    )
    assert entity.billing_controls is not None
    changed = sdk.entities.update(
        customer_id=cid,
        entity_id="ws",
        billing_controls={
            "usage_limits": [{"feature_id": "messages", "limit": 3, "interval": "week"}]
        },
    )
    assert changed.billing_controls is not None
    assert changed.billing_controls.spend_limits is not None
    assert changed.billing_controls.usage_limits is not None
    assert (
        sdk.check(
            customer_id=cid, feature_id="messages", entity_id="ws", required_balance=4
        ).allowed
        is False
    )
    # a bad value is refused with one clear error
    with pytest.raises(AutumnDefaultError) as err:
        sdk.customers.update(
            customer_id=cid,
            billing_controls={
                "usage_limits": [{"feature_id": "messages", "limit": -1, "interval": "day"}]
            },
        )
    assert "-1" in str(err.value.body)
