"""autumn-js 1.3.13's server SDK, unchanged, drives the engine through the real server:
customers, check, track, attach and an error. ``npm install`` runs here (cache in a temporary
directory); Node 20 and the npm registry must be reachable, a failure to install fails the test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.wire.conftest import SECRET, Server, new_id

FIXTURE = Path(__file__).with_name("js")


@pytest.fixture(scope="module")
def js_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("autumn_js")
    for name in ("package.json", "scenario.mjs"):
        shutil.copy(FIXTURE / name, work / name)
    cache = tmp_path_factory.mktemp("npm_cache")
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--cache", str(cache)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return work


def test_autumn_js_drives_customers_check_track_attach(server: Server, js_dir: Path) -> None:
    cid = new_id()
    env = {**os.environ, "AUTUMN_SECRET_KEY": SECRET, "AUTUMN_URL": server.url, "CUSTOMER_ID": cid}
    done = subprocess.run(
        ["node", "scenario.mjs"], cwd=js_dir, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["created"] == {"id": cid, "email": f"{cid}@example.com", "plans": ["free"]}
    assert out["check"] == {"allowed": True, "remaining": 100, "granted": 100}
    assert out["track"] == {"value": 3, "remaining": 97, "usage": 3}
    assert out["denied"] == {"allowed": False}
    assert out["attach"] == {"customerId": cid, "paymentUrl": None, "total": 50}
    assert out["customer"] == {"plans": ["premium"], "granted": 5000, "sso": "premium"}
    assert out["listed"] is True
    assert out["error"]["status"] == 404
    assert out["error"]["body"]["code"] == "customer_not_found"
