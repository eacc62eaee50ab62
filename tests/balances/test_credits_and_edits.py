"""Credit systems (CS1-CS5, K4-K6), unlimited (R5) and balance edits (B1-B4) on the facade."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from autumn_core import Autumn, InsufficientBalance, InvalidRequest, ManualClock
from tests.balances.conftest import T0


# -- credit systems ------------------------------------------------------------------------------
def test_k5_direct_then_credits_decide_together(billing: Autumn) -> None:
    """K5: images 8 and image_credits 50 at 4: 15 allowed (feature images), 25 denied."""
    billing.attach("c", "images8")
    billing.attach("c", "image_credits50")
    ok = billing.check("c", "images", required_balance=15)
    assert (ok.allowed, ok.feature_id, ok.required_balance) == (True, "images", D(15))
    assert ok.balance is not None and ok.balance.feature_id == "images"
    assert not billing.check("c", "images", required_balance=25).allowed


def test_k4_no_own_rows_reports_the_credit_system_in_credits(billing: Autumn) -> None:
    """K4/K5: no words rows, credits 100 at 2.5: required 6 -> feature credits, required 15."""
    billing.attach("c", "credits100")
    r = billing.check("c", "words", required_balance=6)
    assert (r.allowed, r.feature_id, r.required_balance) == (True, "credits", D(15))
    assert r.balance is not None and r.balance.remaining == D(100)
    denied = billing.check("c", "words", required_balance="40.4")
    assert (denied.allowed, denied.feature_id, denied.required_balance) == (
        False,
        "credits",
        D("101.0"),
    )


def test_k4_own_row_at_zero_still_decides(billing: Autumn) -> None:
    """K4: the feature decides when the subject has any row of it, even one at 0."""
    billing.attach("c", "images8")
    billing.attach("c", "image_credits50")
    billing.track("c", "images", value=8)
    r = billing.check("c", "images", required_balance=2)
    assert (r.allowed, r.feature_id, r.required_balance) == (True, "images", D(2))


def test_cs4_member_track_then_pool(billing: Autumn) -> None:
    """CS4: search 10 and search_credits 100 at 0.5: track 16 -> 0 and 97."""
    billing.attach("c", "search10")
    billing.attach("c", "search_credits100")
    r = billing.track("c", "search", value=16)
    assert r.applied == {"search": D(10), "search_credits": D(3)}
    assert (r.balances["search"].remaining, r.balances["search_credits"].remaining) == (
        D(0),
        D(97),
    )


def test_cs2_tracking_the_credit_system_itself_is_one_to_one(billing: Autumn) -> None:
    """CS2: track(credits, 7) spends 7 credits."""
    billing.attach("c", "credits100")
    assert billing.track("c", "credits", value=7).applied == {"credits": D(7)}


def test_cs5_member_with_no_rows_denied_and_track_applies_zero(billing: Autumn) -> None:
    """CS5: no own rows, no pool rows: check denied with no balance; track records an event."""
    billing.customers.create("c")
    r = billing.check("c", "words")
    assert (r.allowed, r.feature_id, r.balance) == (False, "words", None)
    assert billing.track("c", "words", value=3).applied == {"words": D(0)}
    assert len(billing.events.list("c")) == 1


def test_a_non_member_never_spends_the_pool(billing: Autumn) -> None:
    """CS3: messages is not a member of credits: its tracks leave the pool alone."""
    billing.attach("c", "credits100")
    assert billing.track("c", "messages", value=5).applied == {"messages": D(0)}
    assert not billing.check("c", "messages").allowed
    before = billing.customers.get("c")
    with pytest.raises(InsufficientBalance):
        billing.track("c", "messages", value=5, overage="reject")
    assert billing.customers.get("c") == before
    assert before.features["credits"].remaining == D(100)


def test_r5_unlimited_absorbs_and_counts_usage(billing: Autumn) -> None:
    """R5/2.6: unlimited words: always allowed, usage counts what was tracked, remaining 0."""
    billing.attach("c", "unlimited_words")
    billing.attach("c", "credits100")
    assert billing.check("c", "words", required_balance=10**9).allowed
    r = billing.track("c", "words", value="12.5", overage="reject")
    assert r.applied == {"words": D("12.5"), "credits": D(0)}  # R13: every feature considered
    b = billing.customers.get("c").features["words"]
    assert (b.unlimited, b.granted, b.remaining, b.usage, b.overage) == (
        True,
        D(0),
        D(0),
        D("12.5"),
        D(0),
    )
    assert billing.customers.get("c").features["credits"].remaining == D(100)


def test_k6_usage_row_floor_in_check(billing: Autumn) -> None:
    """K6: included 50 with max_purchase 150: 200 allowed, 201 denied; track reject agrees."""
    billing.attach("c", "k6")
    assert billing.check("c", "messages", required_balance=200).allowed
    assert not billing.check("c", "messages", required_balance=201).allowed
    b = billing.track("c", "messages", value=200, overage="reject").balances["messages"]
    assert (b.remaining, b.usage, b.overage, b.max_purchase) == (D(0), D(200), D(150), D(150))


def test_k7_send_event_with_zero_or_negative_required(billing: Autumn) -> None:
    """K7: required <= 0 is allowed and its track is recorded (a negative one refunds)."""
    billing.attach("c", "m100")
    billing.track("c", "messages", value=10)
    r = billing.check("c", "messages", required_balance=-4, send_event=True)
    assert r.allowed and r.balance is not None and r.balance.remaining == D(94)
    assert [e.value for e in billing.events.list("c")] == [D(10), D(-4)]


def test_overflow_lands_on_the_first_row(billing: Autumn) -> None:
    """R8/R9: overflow -> what pass 1 left goes on the first row in order."""
    billing.attach("c", "m10")
    billing.balances.grant("c", "messages", 5)
    r = billing.track("c", "messages", value=20, overage="overflow")
    assert r.applied == {"messages": D(20)}
    assert [x.balance for x in r.balances["messages"].breakdown] == [D(-5), D(0)]


# -- balance edits (B1-B4) -----------------------------------------------------------------------
def test_b1_set_requirements(billing: Autumn) -> None:
    """B1: exactly one of remaining/usage; boolean, unlimited or no row -> InvalidRequest."""
    billing.attach("c", "free")
    billing.attach("c", "unlimited_words")
    for kwargs in ({}, {"remaining": 1, "usage": 1}):
        with pytest.raises(InvalidRequest):
            billing.balances.set("c", "messages", **kwargs)
    for feature in ("dashboard", "words", "action1"):
        with pytest.raises(InvalidRequest):
            billing.balances.set("c", feature, remaining=1)


def test_b2_b3_set_remaining_and_usage(billing: Autumn) -> None:
    """B2/B3: granted 250: remaining 190 -> usage 60; 280 -> usage -30; usage 310 -> overage 60."""
    billing.attach("c", "m200")
    billing.balances.grant("c", "messages", 50)
    b = billing.balances.set("c", "messages", remaining=190)
    assert (b.granted, b.remaining, b.usage) == (D(250), D(190), D(60))
    b = billing.balances.set("c", "messages", remaining=280)
    assert (b.granted, b.remaining, b.usage) == (D(250), D(280), D(-30))
    b = billing.balances.set("c", "messages", usage=310)
    assert (b.remaining, b.overage, b.usage) == (D(0), D(60), D(310))
    b = billing.balances.set("c", "messages", usage=0)
    assert (b.remaining, b.usage) == (D(250), D(0))
    assert billing.events.list("c") == []  # B1: no event


def test_b4_grant_with_reset_refills_to_the_amount(billing: Autumn, clock: ManualClock) -> None:
    """B4: a grant with a reset is anchored at the grant time and refills to its amount."""
    clock.advance(hours=5)
    b = billing.balances.grant("c", "messages", 30, reset="week")
    assert (b.granted, b.interval, b.next_reset_at) == (
        D(30),
        "week",
        T0 + timedelta(days=7, hours=5),
    )
    billing.track("c", "messages", value=12)
    clock.advance(days=15)
    b = billing.customers.get("c").features["messages"]
    assert (b.remaining, b.next_reset_at) == (D(30), T0 + timedelta(days=21, hours=5))


def test_b4_grant_expiry_and_order(billing: Autumn, clock: ManualClock) -> None:
    """B4/O6: an expiring grant is spent before a permanent one and vanishes at expiry."""
    billing.balances.grant("c", "messages", 10)
    billing.balances.grant("c", "messages", 10, expires_at=T0 + timedelta(days=3))
    b = billing.track("c", "messages", value=4).balances["messages"]
    assert [x.balance for x in b.breakdown] == [D(10), D(6)]
    clock.advance(days=3)
    b = billing.customers.get("c").features["messages"]
    assert (b.granted, b.remaining, len(b.breakdown)) == (D(10), D(10), 1)


def test_b4_grant_validation(billing: Autumn) -> None:
    """B4: amount > 0, not boolean, aware future expiry, known reset."""
    billing.customers.create("c")
    for amount in (0, -1):
        with pytest.raises(InvalidRequest):
            billing.balances.grant("c", "messages", amount)
    with pytest.raises(InvalidRequest):
        billing.balances.grant("c", "dashboard", 1)
    with pytest.raises(InvalidRequest):
        billing.balances.grant("c", "messages", 1, expires_at=T0)
    with pytest.raises(InvalidRequest):
        billing.balances.grant("c", "messages", 1, expires_at=T0.replace(tzinfo=None))
    with pytest.raises(InvalidRequest):
        billing.balances.grant("c", "messages", 1, reset="fortnight")
    assert billing.customers.get("c").features == {}
