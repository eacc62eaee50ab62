"""The Django example shop through Django's test client: the app config, the engine built once
from settings, the middleware and the gate decorators."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import django
import pytest
from django.test import Client

SHOP = Path(__file__).resolve().parents[2] / "examples" / "django_app"


@pytest.fixture(scope="module")
def client() -> Client:
    sys.path.insert(0, str(SHOP))
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop.settings"
    django.setup()
    from autumn_wire import django as autumn_django

    autumn_django.reset()
    return Client()


ANN = {"HTTP_X_USER_ID": "ann"}


def test_gates_and_tracking_after_the_response(client: Client) -> None:
    from autumn_wire.django import billing

    assert billing() is billing()  # built once from settings
    assert client.post("/signup/ann").json() == {"id": "ann", "plans": ["free"]}
    r = client.post("/chat", **ANN)  # type: ignore[arg-type]
    assert r.json() == {"reply": "hello"}
    # Django's test client closes the response, as a server does once it is sent
    assert billing().customers.get("ann").features["messages"].remaining == Decimal(99)
    billing().balances.set("ann", "messages", remaining=0)
    refused = client.post("/chat", **ANN)  # type: ignore[arg-type]
    assert refused.status_code == 403
    assert refused.json() == {
        "message": "customer ann does not have 1 messages left",
        "code": "insufficient_balance",
        "env": "sandbox",
    }
    assert client.get("/sso", **ANN).json()["code"] == "feature_not_enabled"  # type: ignore[arg-type]
    assert client.post("/upgrade", **ANN).json() == {"scenario": "upgrade"}  # type: ignore[arg-type]
    assert client.get("/sso", **ANN).json() == {"sso": "configured"}  # type: ignore[arg-type]
    assert client.get("/sso").status_code == 401


def test_the_middleware_answers_library_errors(client: Client) -> None:
    r = client.post("/upgrade", HTTP_X_USER_ID="has space")
    assert (r.status_code, r.json()["code"]) == (400, "invalid_request")


def test_manage_py_check_passes() -> None:
    done = subprocess.run(
        [sys.executable, str(SHOP / "manage.py"), "check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
