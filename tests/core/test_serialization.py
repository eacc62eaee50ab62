"""``to_dict`` / ``from_dict`` round-trip every public result type; errors carry stable codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autumn_core
from autumn_core import errors, from_dict, to_dict
from autumn_core.results import (
    AttachPreview,
    AttachResult,
    Balance,
    BalanceRow,
    CheckResult,
    Customer,
    CustomerProduct,
    Entity,
    Event,
    Invoice,
    InvoiceLine,
    RolloverBalance,
    TrackResult,
)

decimals = st.decimals(
    allow_nan=False, allow_infinity=False, min_value=-(10**15), max_value=10**15, places=6
)
datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
text = st.text(min_size=1, max_size=12)
json_values = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), text)


def _strategy(cls: type) -> st.SearchStrategy[Any]:
    attrs.resolve_types(cls)
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for f in attrs.fields(cls):
        kwargs[f.name] = _for_type(f.type)
    return st.builds(cls, **kwargs)


def _for_type(tp: Any) -> st.SearchStrategy[Any]:
    import types
    import typing

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[_for_type(a) for a in args])
    if tp is type(None):
        return st.none()
    if tp is Decimal:
        return decimals
    if tp is datetime:
        return datetimes
    if tp is str:
        return text
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(0, 100)
    if origin is list:
        return st.lists(_for_type(args[0]), max_size=2)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(_for_type(args[0]), max_size=2).map(tuple)
    if origin is dict:
        return st.dictionaries(
            text, _for_type(args[1]) if args[1] is not Any else json_values, max_size=2
        )
    if tp is Any:
        return json_values
    if attrs.has(tp):
        return _strategy(tp)
    raise AssertionError(f"no strategy for {tp!r}")


RESULT_TYPES = [
    RolloverBalance,
    BalanceRow,
    Balance,
    CustomerProduct,
    Entity,
    Customer,
    CheckResult,
    TrackResult,
    Event,
    InvoiceLine,
    Invoice,
    AttachResult,
    AttachPreview,
]


@pytest.mark.parametrize("cls", RESULT_TYPES, ids=lambda c: c.__name__)
def test_every_result_round_trips_through_json(cls: type) -> None:
    @settings(max_examples=40, deadline=None)
    @given(_strategy(cls))
    def check(obj: Any) -> None:
        data = to_dict(obj)
        assert from_dict(cls, json.loads(json.dumps(data))) == obj

    check()


def test_decimals_serialise_as_exact_strings() -> None:
    row = RolloverBalance(Decimal("0.1"), Decimal("23.47"), None)
    assert to_dict(row) == {"amount": "0.1", "balance": "23.47", "expires_at": None}


def test_real_results_round_trip(billing: autumn_core.Autumn) -> None:
    billing.track("c", "messages", value="2.5")
    customer = billing.customers.get("c")
    assert from_dict(Customer, json.loads(json.dumps(to_dict(customer)))) == customer


def test_error_codes_are_stable_and_hierarchy_matches_the_api() -> None:
    codes = {
        cls.__name__: cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.AutumnError)
    }
    assert codes["InvalidRequest"] == "invalid_request"
    assert codes["CustomerNotFound"] == "customer_not_found"
    assert codes["IdempotencyConflict"] == "idempotency_conflict"
    assert len(set(codes.values())) == len(codes)
    assert issubclass(errors.InvalidRequest, ValueError)
    assert issubclass(errors.InvalidCatalog, errors.InvalidRequest)
    assert issubclass(errors.WebhookSignatureError, errors.InvalidRequest)
    assert issubclass(errors.CustomerNotFound, LookupError)
    for name in ("ProductAlreadyAttached", "EntityAlreadyExists", "IdempotencyConflict"):
        assert issubclass(getattr(errors, name), errors.Conflict)
    assert issubclass(errors.PaymentFailed, errors.PaymentError)


def test_open_by_url_uses_the_entry_points() -> None:
    from tests.conftest import reference_catalog

    billing = autumn_core.open("memory://", catalog=reference_catalog())
    assert billing.track("c", "messages").applied == {"messages": 1}
    with pytest.raises(autumn_core.InvalidRequest, match="scheme 'nope'"):
        autumn_core.open("nope://x", catalog=reference_catalog())
    with pytest.raises(autumn_core.InvalidRequest):
        autumn_core.open("no-scheme", catalog=reference_catalog())
