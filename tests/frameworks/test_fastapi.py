"""The FastAPI example through FastAPI's test client: gates as dependencies (403 Autumn bodies),
usage tracked after the response, and the mounted /v1 and /api/autumn routes."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from types import ModuleType

import httpx
import pytest
from autumn_sdk import Autumn as Sdk
from fastapi.testclient import TestClient

from tests.frameworks.conftest import load_example

ANN = {"x-user-id": "ann"}


@pytest.fixture
def example() -> ModuleType:
    return load_example("fastapi_app")


@pytest.fixture
def client(example: ModuleType) -> Iterator[TestClient]:
    with TestClient(example.app) as c:
        yield c


class _ThroughTestClient(httpx.BaseTransport):
    """autumn-sdk speaks httpx; Starlette's test client may run on httpx2, whose client the sdk
    cannot drive. Each request is handed to the test client and its answer rebuilt in httpx."""

    def __init__(self, client: TestClient) -> None:
        self._client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self._client.request(
            request.method, str(request.url), headers=dict(request.headers), content=request.read()
        )
        headers = [
            (k, v)
            for k, v in answer.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)


def _remaining(example: ModuleType, cid: str) -> Decimal:
    return example.billing.customers.get(cid).features["messages"].remaining  # type: ignore[no-any-return]


def test_require_balance_tracks_after_the_response(client: TestClient, example: ModuleType) -> None:
    assert client.post("/signup/ann").json() == {"id": "ann", "plans": ["free"]}
    r = client.post("/chat", headers=ANN)
    assert r.status_code == 200 and r.json()["messages_left"] == "99"
    # the test client runs background tasks once the response is complete
    assert _remaining(example, "ann") == Decimal(99)
    example.billing.balances.set("ann", "messages", remaining=0)
    refused = client.post("/chat", headers=ANN)
    assert refused.status_code == 403
    assert refused.json() == {
        "message": "customer ann does not have 1 messages left",
        "code": "insufficient_balance",
        "env": "sandbox",
    }
    assert _remaining(example, "ann") == Decimal(0)


def test_require_feature(client: TestClient) -> None:
    client.post("/signup/ann")
    refused = client.get("/sso", headers=ANN)
    assert (refused.status_code, refused.json()["code"]) == (403, "feature_not_enabled")
    assert client.post("/upgrade", headers=ANN).json()["scenario"] == "upgrade"
    assert client.get("/sso", headers=ANN).json() == {"sso": "configured"}
    anonymous = client.get("/sso")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "no_customer_id")


def test_a_library_error_in_a_view_is_an_autumn_body(client: TestClient) -> None:
    r = client.post("/signup/has space")
    assert (r.status_code, r.json()["code"]) == (400, "invalid_request")


def test_the_mounted_api_serves_autumn_sdk(client: TestClient) -> None:
    sdk = Sdk(
        secret_key="am_sk_test_example",
        server_url="http://testserver",
        client=httpx.Client(transport=_ThroughTestClient(client)),
        fail_open=False,
    )
    made = sdk.customers.get_or_create(customer_id="bob", email="bob@example.com")
    assert [s.plan_id for s in made.subscriptions] == ["free"]
    assert sdk.track(customer_id="bob", feature_id="messages", value=4).balance.remaining == 96  # type: ignore[union-attr]


def test_the_frontend_routes_speak_camel_case(client: TestClient) -> None:
    r = client.post("/api/autumn/getOrCreateCustomer", json={"customerId": "mallory"}, headers=ANN)
    body = r.json()
    assert r.status_code == 200 and body["id"] == "ann"  # the browser cannot pick the customer
    assert body["balances"]["messages"]["nextResetAt"] > 0
    assert body["subscriptions"][0]["planId"] == "free"
    plans = client.post("/api/autumn/listPlans", json={}, headers=ANN).json()
    assert [p["id"] for p in plans["list"]] == ["free", "pro", "premium", "top_up"]
    attach = client.post("/api/autumn/attach", json={"planId": "pro"}, headers=ANN).json()
    assert attach == {
        "customerId": "ann",
        "entityId": None,
        "paymentUrl": None,
        "invoice": None,
        "requiredAction": None,
    }
    nobody = client.post("/api/autumn/attach", json={"planId": "pro"})
    assert (nobody.status_code, nobody.json()["code"]) == (401, "no_customer_id")
    quiet = client.post("/api/autumn/getOrCreateCustomer", json={"errorOnNotFound": False})
    assert quiet.status_code == 204
    missing = client.post("/api/autumn/attach", json={"planId": "nope"}, headers=ANN)
    assert missing.json() == {
        "message": "product 'nope' does not exist",
        "code": "product_not_found",
        "statusCode": 404,
    }
