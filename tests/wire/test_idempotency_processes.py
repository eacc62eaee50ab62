"""The ``Idempotency-Key`` registry lives in the store: two ``autumn serve`` processes on one
SQLite file, or on one PostgreSQL database, share it (Autumn's 409, its release after a
failure), as one process does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg_cluster import PgCluster
from tests.wire.conftest import Server, new_id, start_server, stop_server


@pytest.fixture(params=["sqlite", "postgres"])
def two_servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    if request.param == "sqlite":
        db = f"sqlite:///{tmp_path}/shared.db"
    else:
        cluster: PgCluster = request.getfixturevalue("wire_pg")
        db = cluster.create_database(f"idem_{uuid.uuid4().hex[:8]}")
    first = start_server(db)
    try:
        second = start_server(db)
        try:
            yield first, second
        finally:
            stop_server(second)
    finally:
        stop_server(first)


def test_a_key_used_by_one_process_is_a_conflict_in_the_other(
    two_servers: tuple[Server, Server],
) -> None:
    a, b = two_servers
    cid = new_id()
    key = {"Idempotency-Key": f"key-{uuid.uuid4().hex}"}
    # given a customer created through process A with a key
    first = a.post("customers.get_or_create", {"customer_id": cid}, headers=key)
    assert first.status_code == 200
    # when process B receives the same key, for any route
    again = b.post("customers.get_or_create", {"customer_id": cid}, headers=key)
    other = b.post("balances.track", {"customer_id": cid, "feature_id": "messages"}, headers=key)
    # then both are Autumn's 409, and the track was not applied
    for r in (again, other):
        assert (r.status_code, r.json()["code"]) == (409, "duplicate_idempotency_key")
        assert key["Idempotency-Key"] in r.json()["message"]
    got = a.post("balances.check", {"customer_id": cid, "feature_id": "messages"}).json()
    assert got["balance"]["usage"] == 0
    # and process A refuses it too
    assert a.post("customers.get", {"customer_id": cid}, headers=key).status_code == 409


def test_a_key_is_released_after_a_failure_for_a_retry_in_the_other_process(
    two_servers: tuple[Server, Server],
) -> None:
    a, b = two_servers
    cid = new_id()
    key = {"Idempotency-Key": f"key-{uuid.uuid4().hex}"}
    # given a request through A that fails (the customer does not exist yet)
    failed = a.post("balances.track", {"customer_id": cid, "feature_id": "nope"}, headers=key)
    assert failed.status_code == 404
    # when it is retried, corrected, through B
    retried = b.post(
        "balances.track", {"customer_id": cid, "feature_id": "messages", "value": 4}, headers=key
    )
    # then it goes through once, and the key is now held everywhere
    assert retried.status_code == 200 and retried.json()["balance"]["usage"] == 4
    for srv in (a, b):
        r = srv.post("balances.track", {"customer_id": cid, "feature_id": "messages"}, headers=key)
        assert r.status_code == 409
    got = b.post("balances.check", {"customer_id": cid, "feature_id": "messages"}).json()
    assert got["balance"]["usage"] == 4
