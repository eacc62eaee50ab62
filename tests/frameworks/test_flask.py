"""The Flask example through Flask's test client: the extension, the gate decorators, usage
tracked when the response is closed (after it was sent)."""

from __future__ import annotations

from decimal import Decimal

from flask import Flask

from autumn_wire.flask import AutumnFlask
from tests.frameworks.conftest import load_example

ANN = {"x-user-id": "ann"}


def _app() -> Flask:
    app: Flask = load_example("flask_app").create_app("memory://")
    return app


def test_require_balance_tracks_after_the_response() -> None:
    app = _app()
    billing = app.extensions["autumn"].billing
    client = app.test_client()
    assert client.post("/signup/ann").json == {"id": "ann", "plans": ["free"]}
    r = client.post("/chat", headers=ANN)
    assert r.json == {"reply": "hello"}
    # the response is sent but not closed yet: nothing tracked
    assert billing.customers.get("ann").features["messages"].remaining == Decimal(100)
    r.close()
    assert billing.customers.get("ann").features["messages"].remaining == Decimal(99)
    billing.balances.set("ann", "messages", remaining=0)
    refused = client.post("/chat", headers=ANN)
    assert refused.status_code == 403
    assert refused.json == {
        "message": "customer ann does not have 1 messages left",
        "code": "insufficient_balance",
        "env": "sandbox",
    }


def test_require_feature_and_errors() -> None:
    app = _app()
    client = app.test_client()
    client.post("/signup/ann")
    assert client.get("/sso", headers=ANN).json["code"] == "feature_not_enabled"  # type: ignore[index]
    assert client.post("/upgrade", headers=ANN).json == {"scenario": "upgrade"}
    assert client.get("/sso", headers=ANN).json == {"sso": "configured"}
    anonymous = client.get("/sso")
    assert (anonymous.status_code, anonymous.json["code"]) == (401, "no_customer_id")  # type: ignore[index]
    bad = client.post("/signup/has space")
    assert (bad.status_code, bad.json["code"]) == (400, "invalid_request")  # type: ignore[index]


def test_the_extension_is_found_from_the_app() -> None:
    app = _app()
    with app.app_context():
        assert AutumnFlask.current() is app.extensions["autumn"]
