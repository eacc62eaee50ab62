"""autumn-sdk 1.2.0, unchanged (``fail_open=False``, ``server_url=``), drives the engine over
HTTP through the ``autumn serve`` process: every response must pass the SDK's own models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from autumn_sdk import Autumn as Sdk
from autumn_sdk.errors import AutumnDefaultError

from tests.wire.conftest import Server, new_id, serve


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from serve(request, tmp_path_factory)


DAY_MS = 86_400_000


def test_get_or_create_with_a_null_id_and_an_email_then_claimed_by_id(sdk: Sdk) -> None:
    email = f"{new_id('ann')}@example.com"
    # given a customer pre-created with only an email (as from a dashboard)
    pre = sdk.customers.get_or_create(customer_id=None, email=email, name="Ann")
    assert pre.id is None and pre.email == email
    assert [s.plan_id for s in pre.subscriptions] == ["free"]
    # when the user signs up with an id and the same email
    cid = new_id()
    claimed = sdk.customers.get_or_create(customer_id=cid, email=email.upper())
    # then that customer is claimed (same creation time, the default plan kept), not duplicated
    assert claimed.id == cid
    assert claimed.created_at == pre.created_at
    assert [s.plan_id for s in claimed.subscriptions] == ["free"]
    assert sdk.customers.get(customer_id=cid).name == "Ann"
    found = sdk.customers.list(search=email, limit=10).list
    assert [c.id for c in found] == [cid]
    # and get-or-create with the id again returns the same customer
    assert sdk.customers.get_or_create(customer_id=cid).created_at == pre.created_at


def test_check_and_track_with_balances(sdk: Sdk) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid, email=f"{cid}@example.com")
    first = sdk.check(customer_id=cid, feature_id="messages")
    assert first.allowed is True
    assert first.balance is not None
    assert (first.balance.granted, first.balance.remaining, first.balance.usage) == (100, 100, 0)
    assert first.balance.next_reset_at is not None
    tracked = sdk.track(customer_id=cid, feature_id="messages", value=30)
    assert tracked.value == 30
    assert tracked.balance is not None
    assert (tracked.balance.remaining, tracked.balance.usage) == (70, 30)
    assert sdk.check(customer_id=cid, feature_id="messages", required_balance=70).allowed is True
    denied = sdk.check(customer_id=cid, feature_id="messages", required_balance=71)
    assert denied.allowed is False and denied.required_balance == 71
    # an event name reaches its feature; a fractional value is kept exactly
    by_event = sdk.track(customer_id=cid, event_name="chat", value=2.5)
    assert by_event.balance is not None and by_event.balance.remaining == 67.5
    # send_event deducts atomically with the decision
    sent = sdk.check(customer_id=cid, feature_id="messages", required_balance=7.5, send_event=True)
    assert sent.allowed is True
    assert sdk.check(customer_id=cid, feature_id="messages").balance.remaining == 60  # type: ignore[union-attr]
    # a boolean feature the plan lacks is refused, with no flag
    sso = sdk.check(customer_id=cid, feature_id="sso")
    assert sso.allowed is False and sso.flag is None and sso.balance is None
    events = sdk.events.list(customer_id=cid).list
    assert [e.value for e in events] == [30, 2.5, 7.5]


def test_attach_with_a_trial_and_a_fingerprint(sdk: Sdk) -> None:
    fp = new_id("fp")
    first, second = new_id(), new_id()
    sdk.customers.get_or_create(customer_id=first, fingerprint=fp)
    sdk.customers.get_or_create(customer_id=second, fingerprint=fp)
    # the first account on a device gets pro's 14-day trial, nothing invoiced
    got = sdk.billing.attach(customer_id=first, plan_id="pro")
    assert got.payment_url is None and got.invoice is None
    (pro,) = [s for s in sdk.customers.get(customer_id=first).subscriptions if s.plan_id == "pro"]
    assert pro.trial_ends_at == pro.started_at + 14 * DAY_MS
    assert sdk.check(customer_id=first, feature_id="sso").flag is not None
    # a second account on the same device is offered no trial, and pays at once
    offered = {p.id: p for p in sdk.plans.list(request={"customer_id": second}).list}
    assert offered["pro"].customer_eligibility is not None
    assert offered["pro"].customer_eligibility.trial_available is False
    paid = sdk.billing.attach(customer_id=second, plan_id="pro")
    assert paid.invoice is not None
    assert (paid.invoice.status, paid.invoice.total, paid.invoice.currency) == ("paid", 20, "usd")
    (pro2,) = [s for s in sdk.customers.get(customer_id=second).subscriptions if s.plan_id == "pro"]
    assert pro2.trial_ends_at is None


def test_upgrade_then_cancel_through_billing_update(sdk: Sdk) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid)
    sdk.billing.attach(customer_id=cid, plan_id="pro", free_trial=None)  # no trial: pays 20
    preview = sdk.billing.preview_attach(customer_id=cid, plan_id="premium")
    assert [o.plan_id for o in preview.outgoing] == ["pro"]
    up = sdk.billing.update(customer_id=cid, plan_id="premium")
    assert up.invoice is not None and up.invoice.total == preview.total
    subs = {s.plan_id: s for s in sdk.customers.get(customer_id=cid).subscriptions}
    assert set(subs) == {"premium"}
    assert sdk.check(customer_id=cid, feature_id="messages").balance.granted == 5000  # type: ignore[union-attr]
    # cancel at the end of the cycle: still active, canceling, ends at the period end
    sdk.billing.update(customer_id=cid, plan_id="premium", cancel_action="cancel_end_of_cycle")
    subs = {s.plan_id: s for s in sdk.customers.get(customer_id=cid).subscriptions}
    assert subs["premium"].canceled_at is not None
    assert subs["premium"].expires_at == subs["premium"].current_period_end
    assert subs["free"].status == "scheduled"
    # uncancel, then cancel immediately: the default plan is back at once
    sdk.billing.update(customer_id=cid, plan_id="premium", cancel_action="uncancel")
    assert sdk.customers.get(customer_id=cid).subscriptions[0].canceled_at is None
    sdk.billing.update(customer_id=cid, plan_id="premium", cancel_action="cancel_immediately")
    subs = {s.plan_id: s for s in sdk.customers.get(customer_id=cid).subscriptions}
    assert set(subs) == {"free"} and subs["free"].status == "active"


def test_entities(sdk: Sdk) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid)
    made = sdk.entities.create(customer_id=cid, entity_id="seat_1", feature_id="seats", name="Ann")
    assert (made.id, made.name, made.customer_id, made.feature_id) == (
        "seat_1",
        "Ann",
        cid,
        "seats",
    )
    assert made.balances["messages"].granted == 100
    seats = sdk.customers.get(customer_id=cid).balances["seats"]
    assert (seats.granted, seats.usage, seats.remaining) == (2, 1, 1)
    assert sdk.entities.get(customer_id=cid, entity_id="seat_1").name == "Ann"
    sdk.track(customer_id=cid, feature_id="messages", entity_id="seat_1", value=4)
    assert (
        sdk.entities.get(customer_id=cid, entity_id="seat_1").balances["messages"].remaining == 96
    )
    assert sdk.entities.delete(customer_id=cid, entity_id="seat_1").success is True
    with pytest.raises(AutumnDefaultError) as err:
        sdk.entities.get(customer_id=cid, entity_id="seat_1")
    assert err.value.status_code == 404 and '"entity_not_found"' in err.value.body


def test_set_balance(sdk: Sdk) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid)
    assert sdk.balances.update(customer_id=cid, feature_id="messages", remaining=7).success
    assert sdk.check(customer_id=cid, feature_id="messages").balance.remaining == 7  # type: ignore[union-attr]
    sdk.balances.update(customer_id=cid, feature_id="messages", usage=10)
    after = sdk.check(customer_id=cid, feature_id="messages").balance
    assert after is not None and (after.remaining, after.usage) == (90, 10)
    assert sdk.balances.create(customer_id=cid, feature_id="messages", included_grant=50).success
    assert sdk.check(customer_id=cid, feature_id="messages").balance.remaining == 140  # type: ignore[union-attr]


def test_plans_list_eligibility(sdk: Sdk) -> None:
    cid = new_id()
    sdk.customers.get_or_create(customer_id=cid, fingerprint=new_id("fp"))
    plans = {p.id: p for p in sdk.plans.list(request={"customer_id": cid}).list}
    elig = {k: p.customer_eligibility for k, p in plans.items()}
    assert {k: e.attach_action for k, e in elig.items() if e} == {
        "free": "none",
        "pro": "upgrade",
        "premium": "upgrade",
        "top_up": "purchase",
    }
    assert elig["pro"].trial_available is True  # type: ignore[union-attr]
    assert elig["free"].status == "active"  # type: ignore[union-attr]
    assert plans["pro"].price is not None and plans["pro"].price.amount == 20
    assert plans["pro"].free_trial is not None and plans["pro"].free_trial.duration_length == 14
    sdk.billing.attach(customer_id=cid, plan_id="premium")
    after = {
        p.id: p.customer_eligibility for p in sdk.plans.list(request={"customer_id": cid}).list
    }
    assert after["pro"].attach_action == "downgrade"  # type: ignore[union-attr]
    assert after["premium"].attach_action == "none"  # type: ignore[union-attr]
    # without a customer, no eligibility is computed
    assert all(p.customer_eligibility is None for p in sdk.plans.list().list)
    assert sdk.plans.get(plan_id="top_up").items[0].price.billing_method == "prepaid"  # type: ignore[union-attr]


def test_features_over_plain_http(server: Server) -> None:
    # autumn-sdk 1.2.0's features module cannot be imported (a NameError in the SDK itself)
    listed = server.post("features.list", {}).json()["list"]
    assert [(f["id"], f["type"], f["consumable"]) for f in listed] == [
        ("messages", "metered", True),
        ("seats", "metered", False),
        ("sso", "boolean", False),
    ]
    assert server.post("features.get", {"feature_id": "sso"}).json()["name"] == "SSO"
