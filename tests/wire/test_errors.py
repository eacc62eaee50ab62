"""Each of Autumn's error codes, as its clients see them: status, ``code`` and ``env``; and
the ``Idempotency-Key`` semantics (a reuse is a 409, a failed request frees its key)."""

from __future__ import annotations

import json

import httpx
import pytest
from autumn_sdk import Autumn as Sdk
from autumn_sdk.errors import AutumnDefaultError

from tests.wire.conftest import Server, new_id


def _sdk_error(call: object) -> tuple[int, dict[str, str]]:
    with pytest.raises(AutumnDefaultError) as err:
        call()  # type: ignore[operator]
    return err.value.status_code, json.loads(err.value.body)


def test_not_found_codes(sdk: Sdk) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid)
    cases = {
        "customer_not_found": lambda: sdk.customers.get(customer_id=new_id()),
        "feature_not_found": lambda: sdk.check(customer_id=cid, feature_id="nope"),
        "product_not_found": lambda: sdk.billing.attach(customer_id=cid, plan_id="nope"),
        "entity_not_found": lambda: sdk.entities.get(customer_id=cid, entity_id="nope"),
    }
    for code, call in cases.items():
        status, body = _sdk_error(call)
        assert (status, body["code"], body["env"]) == (404, code, "sandbox"), code
        assert body["message"]


def test_request_and_conflict_codes(sdk: Sdk, server: Server) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid)
    sdk.entities.create(customer_id=cid, entity_id="e1", feature_id="seats")
    sdk.billing.attach(customer_id=cid, plan_id="premium")
    status, body = _sdk_error(lambda: sdk.customers.get_or_create(customer_id=None))
    assert (status, body["code"]) == (400, "invalid_request")
    assert body["message"] == "Either customer ID or email is required"
    status, body = _sdk_error(lambda: sdk.billing.attach(customer_id=cid, plan_id="premium"))
    assert (status, body["code"]) == (400, "customer_already_has_product")
    status, body = _sdk_error(
        lambda: sdk.entities.create(customer_id=cid, entity_id="e1", feature_id="seats")
    )
    assert (status, body["code"]) == (409, "entity_already_exists")
    # overage_behavior "reject" (API 2.0) refuses a track that does not fit
    r = server.post(
        "balances.track",
        {"customer_id": cid, "feature_id": "messages", "value": 6000, "overage_behavior": "reject"},
    )
    assert (r.status_code, r.json()["code"]) == (400, "insufficient_balance")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"customer_id": 5, "feature_id": "messages"}, "customer_id: expected a string"),
        ({"feature_id": "messages"}, "customer_id: required"),
        ({"customer_id": "a", "feature_id": "messages", "value": "1"}, "value: expected a number"),
        ({"customer_id": "a", "feature_id": "messages", "value": True}, "value: expected a number"),
        ({"customer_id": "a", "feature_id": "messages", "value": 1e300}, "out of range"),
        (
            {"customer_id": "a", "feature_id": "messages", "overage_behavior": "x"},
            "expected one of",
        ),
        ({"customer_id": "a", "feature_id": "messages", "lock": {"id": 1}}, "lock: not supported"),
        ({"customer_id": "a"}, "exactly one of feature_id and event_name"),
    ],
)
def test_invalid_inputs(server: Server, body: dict[str, object], fragment: str) -> None:
    r = server.post("balances.track", body)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_inputs"
    assert fragment in r.json()["message"]


def test_malformed_json_and_a_huge_body(server: Server) -> None:
    headers = {"Authorization": "Bearer am_sk_test_wire_suite", "content-type": "application/json"}
    bad = httpx.post(f"{server.url}/v1/balances.check", content=b"{nope", headers=headers)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_inputs")
    arr = httpx.post(f"{server.url}/v1/balances.check", content=b"[1]", headers=headers)
    assert (arr.status_code, arr.json()["code"]) == (400, "invalid_inputs")
    big = httpx.post(
        f"{server.url}/v1/balances.check", content=b" " * (2 << 20), headers=headers, timeout=30
    )
    assert (big.status_code, big.json()["code"]) == (413, "request_too_large")


def test_auth_codes(server: Server) -> None:
    url = f"{server.url}/v1/customers.list"
    none = httpx.post(url, json={})
    assert (none.status_code, none.json()["code"]) == (401, "no_secret_key")
    assert "env" not in none.json()  # Autumn: no env before auth
    wrong = httpx.post(url, json={}, headers={"Authorization": "Bearer am_sk_test_wrong"})
    assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_secret_key")
    basic = httpx.post(url, json={}, headers={"Authorization": "Basic abc"})
    assert (basic.status_code, basic.json()["code"]) == (401, "invalid_request")
    status, body = _sdk_error(lambda: server.sdk("am_sk_test_wrong").customers.list())
    assert (status, body["code"]) == (401, "invalid_secret_key")


def test_api_version(server: Server) -> None:
    for version in ("2.0", "2.3.0", "2.4.0", "2.5.0"):
        ok = server.post("features.list", {}, headers={"x-api-version": version})
        assert ok.status_code == 200, version
    for version in ("1.2", "9.9.9", "banana"):
        r = server.post("features.list", {}, headers={"x-api-version": version})
        assert (r.status_code, r.json()["code"]) == (400, "invalid_api_version"), version


def test_unknown_route(server: Server) -> None:
    r = server.post("customers.explode", {})
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


def test_idempotency_key_conflict(sdk: Sdk, server: Server) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid)
    key = new_id("idem")
    headers = {"Idempotency-Key": key}
    sdk.track(customer_id=cid, feature_id="messages", value=5, http_headers=headers)
    status, body = _sdk_error(
        lambda: sdk.track(customer_id=cid, feature_id="messages", value=5, http_headers=headers)
    )
    assert (status, body["code"]) == (409, "duplicate_idempotency_key")
    assert key in body["message"]
    # the usage was recorded once
    assert sdk.check(customer_id=cid, feature_id="messages").balance.remaining == 95  # type: ignore[union-attr]
    # a request that fails frees its key: the retry goes through
    retry = new_id("idem")
    failed = server.post(
        "balances.track",
        {"customer_id": cid, "feature_id": "nope"},
        headers={"Idempotency-Key": retry},
    )
    assert failed.status_code == 404
    again = server.post(
        "balances.track",
        {"customer_id": cid, "feature_id": "messages", "value": 1},
        headers={"Idempotency-Key": retry},
    )
    assert again.status_code == 200 and again.json()["balance"]["remaining"] == 94
    # track's body idempotency_key has the same semantics
    body_key = {"customer_id": cid, "feature_id": "messages", "idempotency_key": new_id("k")}
    assert server.post("balances.track", body_key).status_code == 200
    dup = server.post("balances.track", body_key)
    assert (dup.status_code, dup.json()["code"]) == (409, "duplicate_idempotency_key")


def test_legacy_aliases(server: Server) -> None:
    cid = new_id()
    made = server.post("customers", {"id": cid, "email": f"{cid}@example.com"})
    assert made.status_code == 200 and made.json()["id"] == cid
    for route in ("check", "entitled"):
        r = server.post(route, {"customer_id": cid, "feature_id": "messages"})
        assert r.json()["allowed"] is True, route
    for route in ("track", "events"):
        assert server.post(route, {"customer_id": cid, "feature_id": "messages"}).status_code == 200
    att = server.post("attach", {"customer_id": cid, "product_id": "premium"}).json()
    assert (att["success"], att["product_ids"], att["checkout_url"]) == (True, ["premium"], None)
    cancel = server.post("cancel", {"customer_id": cid, "product_id": "premium"}).json()
    assert cancel == {"success": True, "customer_id": cid, "product_id": "premium"}
    listed = httpx.get(
        f"{server.url}/v1/customers?limit=1000",
        headers={"Authorization": "Bearer am_sk_test_wire_suite"},
    ).json()
    assert cid in [c["id"] for c in listed["list"]]
