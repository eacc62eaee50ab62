"""Property: malformed and extreme bodies, at every route, never get a 5xx and never change
a customer. Each body starts valid for its route and is broken in one field (a wrong type, an
unknown enum value, a huge or over-precise number, a missing required field, an unsupported
field), or is not JSON at all. Runs in-process (Starlette's test client) on memory and SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import autumn_core
from autumn_core import Autumn, Catalog, ManualClock, to_dict
from autumn_wire import api
from tests.wire.conftest import CATALOG

KEY = "am_sk_test_props"
CID = "cus_prop"

# route -> (valid body, {field: kind}); kinds: id (required string), str, num, int, bool, enum,
# obj, list, ms. Every listed field is read and validated before the engine is called.
ROUTES: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "customers.get_or_create": (
        {"customer_id": CID},
        {"name": "str", "email": "str", "fingerprint": "str", "metadata": "obj"},
    ),
    "customers.get": ({"customer_id": CID}, {"customer_id": "id", "expand": "list"}),
    "customers.list": ({}, {"limit": "int", "start_cursor": "str", "search": "str"}),
    "customers.update": (
        {"customer_id": CID, "name": "New"},
        {"customer_id": "id", "name": "str", "email": "str", "metadata": "obj"},
    ),
    "customers.delete": ({"customer_id": CID}, {"customer_id": "id", "delete_in_stripe": "bool"}),
    "balances.check": (
        {"customer_id": CID, "feature_id": "messages", "send_event": True},
        {
            "customer_id": "id",
            "feature_id": "id",
            "required_balance": "num",
            "entity_id": "str",
            "send_event": "bool",
        },
    ),
    "balances.track": (
        {"customer_id": CID, "feature_id": "messages", "value": 3},
        {
            "customer_id": "id",
            "value": "num",
            "overage_behavior": "enum",
            "timestamp": "ms",
            "properties": "obj",
            "entity_id": "str",
            "async": "bool",
            "idempotency_key": "str",
        },
    ),
    "balances.create": (
        {"customer_id": CID, "feature_id": "messages", "included_grant": 5},
        {
            "customer_id": "id",
            "feature_id": "id",
            "included_grant": "num",
            "reset": "obj",
            "expires_at": "ms",
            "entity_id": "str",
        },
    ),
    "balances.update": (
        {"customer_id": CID, "feature_id": "messages", "remaining": 5},
        {"customer_id": "id", "feature_id": "id", "remaining": "num", "entity_id": "str"},
    ),
    "billing.attach": (
        {"customer_id": CID, "plan_id": "premium"},
        {
            "customer_id": "id",
            "plan_id": "id",
            "feature_quantities": "list",
            "free_trial": "obj",
            "redirect_mode": "enum",
            "success_url": "str",
            "entity_id": "str",
        },
    ),
    "billing.preview_attach": (
        {"customer_id": CID, "plan_id": "premium"},
        {"customer_id": "id", "plan_id": "id", "feature_quantities": "list"},
    ),
    "billing.update": (
        {"customer_id": CID, "plan_id": "premium"},
        {
            "customer_id": "id",
            "cancel_action": "enum",
            "feature_quantities": "list",
            "free_trial": "obj",
            "no_billing_changes": "bool",
        },
    ),
    "billing.open_customer_portal": (
        {"customer_id": CID},
        {"customer_id": "id", "return_url": "str", "configuration_id": "str"},
    ),
    "billing.setup_payment": (
        {"customer_id": CID},
        {"customer_id": "id", "success_url": "str", "entity_id": "str"},
    ),
    "entities.create": (
        {"customer_id": CID, "entity_id": "e_new", "feature_id": "seats"},
        {
            "customer_id": "id",
            "entity_id": "id",
            "feature_id": "id",
            "name": "str",
            "customer_data": "obj",
        },
    ),
    "entities.get": (
        {"customer_id": CID, "entity_id": "e1"},
        {"entity_id": "id", "customer_id": "str"},
    ),
    "entities.list": ({"customer_id": CID}, {"customer_id": "str", "limit": "int"}),
    "entities.delete": (
        {"customer_id": CID, "entity_id": "e1"},
        {"entity_id": "id", "customer_id": "str"},
    ),
    "plans.list": (
        {"customer_id": CID},
        {"customer_id": "str", "entity_id": "str", "all_versions": "bool"},
    ),
    "plans.get": ({"plan_id": "pro"}, {"plan_id": "id", "version": "int"}),
    "balances.delete": (
        {"customer_id": CID, "feature_id": "messages", "interval": "one_off"},
        {
            "customer_id": "id",
            "feature_id": "str",
            "balance_id": "str",
            "entity_id": "str",
            "recalculate_balances": "bool",
            "interval": "enum",
        },
    ),
    "billing.preview_update": (
        {"customer_id": CID, "plan_id": "premium"},
        {"customer_id": "id", "cancel_action": "enum", "feature_quantities": "list"},
    ),
    "events.aggregate": (
        {"customer_id": CID, "feature_id": "messages", "range": "7d"},
        {
            "customer_id": "id",
            "feature_id": "list",
            "bin_size": "enum",
            "measure": "enum",
            "custom_range": "obj",
            "max_groups": "int",
            "timezone": "str",
            "group_by": "str",
        },
    ),
    "features.list": ({}, {}),
    "features.get": ({"feature_id": "sso"}, {"feature_id": "id"}),
    "events.list": (
        {"customer_id": CID},
        {
            "customer_id": "str",
            "limit": "int",
            "range": "enum",
            "custom_range": "obj",
            "feature_id": "strlist",
        },
    ),
    "check": ({"customer_id": CID, "feature_id": "messages"}, {"required_balance": "num"}),
    "track": ({"customer_id": CID, "feature_id": "messages"}, {"value": "num"}),
    "attach": (
        {"customer_id": CID, "product_id": "premium"},
        {"options": "list", "force_checkout": "bool"},
    ),
    "cancel": (
        {"customer_id": CID, "product_id": "free"},
        {"product_id": "id", "cancel_immediately": "bool"},
    ),
    "customers": ({"id": CID, "email": "x@example.com"}, {"email": "list", "metadata": "list"}),
}

_not_str = st.one_of(
    st.integers(),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_bad_number = st.one_of(
    st.text(max_size=5),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.sampled_from([10**16, -(10**17), 10**400, 1e300, -1e300, 1e-20, 0.1234567890123456]),
)
_BAD: dict[str, st.SearchStrategy[Any]] = {
    "strlist": st.one_of(
        st.integers(),
        st.lists(st.integers(), min_size=1, max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2),
    ),
    "id": st.one_of(_not_str, st.sampled_from(["", " ", "a b", "x" * 300, "\x00"])),
    "str": _not_str,
    "num": _bad_number,
    "int": st.one_of(_bad_number, st.sampled_from([0, -1, 1001, 2.5])),
    "ms": st.one_of(_bad_number, st.sampled_from([-1, 10**16, 1.5])),
    "bool": st.one_of(
        st.integers(), st.text(max_size=3), st.lists(st.booleans(), min_size=1, max_size=2)
    ),
    "enum": st.one_of(
        st.text(max_size=8).filter(
            lambda s: (
                s
                not in {
                    "cap",
                    "overflow",
                    "reject",
                    "always",
                    "if_required",
                    "never",
                    "cancel_immediately",
                    "cancel_end_of_cycle",
                    "uncancel",
                    "24h",
                    "7d",
                    "30d",
                    "90d",
                    "",
                }
            )
        ),
        st.integers(),
    ),
    "obj": st.one_of(
        st.integers(),
        st.text(min_size=1, max_size=3),
        st.lists(st.integers(), min_size=1, max_size=2),
    ),
    "list": st.one_of(
        st.integers(),
        st.text(min_size=1, max_size=3),
        st.lists(st.integers(), min_size=1, max_size=3),
    ),
}


@st.composite
def broken(draw: st.DrawFn) -> tuple[str, bytes | dict[str, Any]]:
    route = draw(st.sampled_from(sorted(ROUTES)))
    base, fields = ROUTES[route]
    body = dict(base)
    how = draw(st.sampled_from(["field", "unsupported", "raw", "missing"]))
    if how == "field" and fields:
        name = draw(st.sampled_from(sorted(fields)))
        body[name] = draw(_BAD[fields[name]])
    elif how == "missing" and any(k == "id" for k in fields.values()):
        name = draw(st.sampled_from(sorted(k for k, v in fields.items() if v == "id")))
        body.pop(name, None)
        if name not in base:  # nothing to remove: break its type instead
            body[name] = draw(_not_str)
    elif how == "raw":
        return route, draw(
            st.sampled_from(
                [
                    b"{",
                    b"[]",
                    b"null",
                    b"42",
                    b'"x"',
                    b"[" * 5000 + b"]" * 5000,
                    b'{"customer_id": ' + b"9" * 5000 + b"}",
                    b"\xff\xfe",
                    b'{"a": NaN}',
                ]
            )
        )
    else:
        body[draw(st.sampled_from(["zzz_unknown", "customize", "lock", "invoice_mode"]))] = draw(
            st.one_of(st.integers(min_value=1), st.text(min_size=1, max_size=4))
        )
    return route, body


def _snapshot(billing: Autumn) -> Any:
    c = billing.customers.get(CID)
    return (
        to_dict(c),
        [to_dict(e) for e in billing.events.list(CID)],
        [to_dict(i) for i in billing.invoices.list(CID)],
        [to_dict(x) for x in billing.customers.list(limit=1000)],
    )


@pytest.fixture(params=["memory", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Autumn, TestClient]]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/props.db"
    billing = autumn_core.open(url, catalog=Catalog.from_file(CATALOG), clock=ManualClock())
    billing.customers.create(CID, email="prop@example.com")
    billing.entities.create(CID, "e1", "seats")
    billing.track(CID, "messages", value=2)
    with TestClient(api(billing, secret_keys=[KEY]), raise_server_exceptions=False) as client:
        yield billing, client
    billing.close()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=broken())
def test_malformed_bodies_never_5xx_never_change_a_customer(
    engine: tuple[Autumn, TestClient], case: tuple[str, bytes | dict[str, Any]]
) -> None:
    billing, client = engine
    route, body = case
    before = _snapshot(billing)
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    if isinstance(body, bytes):
        r = client.post(f"/{route}", content=body, headers=headers)
    else:
        r = client.post(f"/{route}", json=body, headers=headers)
    assert 400 <= r.status_code < 500, (route, body, r.status_code, r.text)
    err = r.json()
    assert set(err) == {"message", "code", "env"} and err["message"]
    assert _snapshot(billing) == before, (route, body, r.text)
