"""The top-up flow and its webhooks through autumn-sdk 1.2.0 against the real ``autumn serve``
console script (docs/rules.md TU1-TU5, EO3-EO5), on every store: the server's deliverer posts
signed events to a real local receiver."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from autumn_sdk import Autumn as Sdk

from autumn_core.signing import verify
from tests.conftest import PgDatabases
from tests.wire.conftest import SECRET, free_port

from .receiver import Receiver
from .test_topups import topup_catalog

HOOK_SECRET = "whsec_serve"
AUTUMN = shutil.which("autumn", path=str(Path(sys.executable).parent)) or "autumn"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def db_url(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if store_kind == "memory":
        return "memory://"
    if store_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'serve.db'}"
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    return databases.url(8)


@pytest.fixture
def served(db_url: str, tmp_path: Path, receiver: Receiver) -> Iterator[str]:
    catalog = tmp_path / "autumn.toml"
    catalog.write_text(topup_catalog().to_toml())
    port = free_port()
    env = {
        **os.environ,
        "AUTUMN_SECRET_KEY": SECRET,
        "AUTUMN_WEBHOOK_URLS": receiver.url,
        "AUTUMN_WEBHOOK_SECRET": HOOK_SECRET,
        "AUTUMN_WEBHOOK_INTERVAL": "0.2",
    }
    cmd = [AUTUMN, "serve", "--db", db_url, "--catalog", str(catalog), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"autumn serve exited: {out}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(f"{url}/v1/features.list", timeout=2)
                break
            if time.monotonic() > deadline:
                raise RuntimeError("autumn serve did not start within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(receiver: Receiver, kind: str, count: int = 1) -> list[dict[str, object]]:
    """The received events of ``kind`` once ``count`` have arrived (waits up to 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        got = [json.loads(r.body) for r in receiver.received]
        found = [g for g in got if g["type"] == kind]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_the_server_posts_signed_events_of_sdk_calls(served: str, receiver: Receiver) -> None:
    sdk = Sdk(secret_key=SECRET, server_url=served, fail_open=False)
    cid = f"cus_{uuid.uuid4().hex[:12]}"
    # when a customer is created and attaches "standard" through the SDK
    sdk.customers.get_or_create(customer_id=cid)
    sdk.billing.attach(customer_id=cid, plan_id="standard")
    # then the server's deliverer posts the change, signed, once
    [event] = wait_for(receiver, "customer.products.updated")
    data = event["data"]
    assert isinstance(data, dict)
    assert (data["customer_id"], data["scenario"], data["updated_product"]["id"]) == (  # type: ignore[index]
        cid,
        "new",
        "standard",
    )
    [got] = receiver.received
    verify(got.body, got.headers["Autumn-Signature"], HOOK_SECRET, now=time.time)


def test_a_top_up_through_the_sdk_is_charged_once_and_announced(
    served: str, receiver: Receiver
) -> None:
    sdk = Sdk(secret_key=SECRET, server_url=served, fail_open=False)
    cid = f"cus_{uuid.uuid4().hex[:12]}"
    # given a customer on "standard" (5,000 credits; $10 per 1,000 one-off) with a top-up
    sdk.customers.get_or_create(customer_id=cid)
    sdk.billing.attach(customer_id=cid, plan_id="standard")
    sdk.customers.update(
        customer_id=cid,
        billing_controls={
            "auto_topups": [
                {"feature_id": "credits", "enabled": True, "threshold": 500, "quantity": 1000}
            ]
        },
    )
    # when usage takes the balance below 500
    tracked = sdk.track(customer_id=cid, feature_id="credits", value=4600)
    assert tracked.balance is not None and tracked.balance.remaining == 400
    # then the balance was topped up once, and the server posted the signed event
    after = sdk.check(customer_id=cid, feature_id="credits").balance
    assert after is not None and after.remaining == 1400
    sdk.track(customer_id=cid, feature_id="credits", value=100)  # still above: nothing more
    [event] = wait_for(receiver, "billing.auto_topup_succeeded")
    data = event["data"]
    assert isinstance(data, dict)
    assert (data["customer_id"], data["quantity_granted"], data["balance_after"]) == (
        cid,
        1000,
        1400,
    )
    assert data["invoice"]["total"] == 10  # type: ignore[index]
    products = wait_for(receiver, "customer.products.updated", 1)
    assert any(p["data"]["updated_product"]["id"] == "standard" for p in products)  # type: ignore[index]
    for r in receiver.received:
        verify(r.body, r.headers["Autumn-Signature"], HOOK_SECRET, now=time.time)
    assert len(receiver.received) == len({r.headers["Autumn-Event-Id"] for r in receiver.received})
