"""The public calls the differential test draws, and the public state it compares.

A step is a plain tuple ``(call, args...)`` so that a failing sequence prints as something one
can paste back; ``run_step`` turns it into one public call and returns its outcome: the result
through ``to_dict``, or the error's code. ``public_state`` is everything a user can read back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from autumn_core import (
    INF,
    Autumn,
    AutumnError,
    ByEmail,
    Catalog,
    CustomerData,
    Feature,
    FreeTrial,
    Item,
    ManualClock,
    Price,
    Product,
    Tier,
    TrackRequest,
    to_dict,
)

#: The 30th of January: one clock move crosses a month end (and February's short one).
T0 = datetime(2025, 1, 30, 12, 0, tzinfo=UTC)

IDS = ("a", "b")
EMAILS = ("ann@example.com", "bob@example.com")
ENTITIES = ("e1", "e2")
PRODUCTS = ("free", "basic", "pro", "premium", "addon", "credits_pack")
KEYS = ("k1", "k2")


def catalog() -> Catalog:
    return Catalog(
        features=[
            Feature.metered("messages", event_names=["chat"]),
            Feature.metered("words", event_names=["chat"]),
            Feature.allocated("users"),
            Feature.boolean("sso"),
            Feature.credit_system("credits", costs={"words": "2.5"}),
        ],
        products=[
            Product(
                "free",
                default=True,
                items=[
                    Item.feature("messages", included=100, reset="month"),
                    Item.feature("users", included=1),
                ],
            ),
            Product(
                "basic",
                price=Price(10),
                items=[
                    Item.feature("messages", included=500, reset="month"),
                    Item.feature("users", included=2),
                ],
            ),
            Product(
                "pro",
                price=Price(20),
                free_trial=FreeTrial(7, unique_fingerprint=True, card_required=False),
                items=[
                    Item.feature("sso"),
                    Item.feature("messages", included=1000, reset="month"),
                    Item.priced("messages", price="0.015", billing="usage", max_purchase=500),
                    Item.priced("users", included=2, price=10, billing="usage"),
                ],
            ),
            Product(
                "premium",
                price=Price(50),
                items=[
                    Item.feature("sso"),
                    Item.feature("users", included=5),
                    Item.priced(
                        "messages",
                        included=2000,
                        billing="usage",
                        tiers=[Tier(100, "0.02"), Tier(INF, "0.01", flat_amount=1)],
                        tier_mode="volume",
                    ),
                ],
            ),
            Product(
                "addon",
                add_on=True,
                price=Price(5, interval="week"),
                items=[Item.feature("words", included=50, reset="week")],
            ),
            Product(
                "credits_pack",
                add_on=True,
                items=[
                    Item.priced(
                        "credits", price=3, billing_units=10, billing="prepaid", interval="one_off"
                    )
                ],
            ),
        ],
    )


# -- the steps ----------------------------------------------------------------------------------
#: Mostly ids (a call by id auto-creates the customer), sometimes a pre-created one by email.
customer_refs = st.one_of(
    st.sampled_from(IDS),
    st.sampled_from(IDS),
    st.sampled_from(IDS),
    st.sampled_from(EMAILS).map(ByEmail),
)
values = st.decimals(min_value=-30, max_value=400, places=1, allow_nan=False, allow_infinity=False)
amounts = st.decimals(min_value=0, max_value=300, places=0, allow_nan=False, allow_infinity=False)
entities = st.sampled_from([None, None, None, *ENTITIES])

_steps = (
    st.tuples(
        st.just("create"),
        st.sampled_from([*IDS, None]),
        st.sampled_from([*EMAILS, None]),
        st.sampled_from(["fp1", None, "fp2"]),
    ),
    st.tuples(
        st.just("track"),
        customer_refs,
        st.sampled_from(["messages", "words", "credits", "users", "event:chat"]),
        values,
        entities,
        st.sampled_from(["cap", "overflow", "reject"]),
        st.one_of(st.none(), st.sampled_from(KEYS)),
    ),
    st.tuples(
        st.just("check"),
        customer_refs,
        st.sampled_from(["messages", "words", "credits", "sso", "users"]),
        amounts,
        entities,
        st.booleans(),
    ),
    st.tuples(
        st.just("set"),
        customer_refs,
        st.sampled_from(["messages", "words", "users"]),
        st.sampled_from(["remaining", "usage"]),
        amounts,
        entities,
    ),
    st.tuples(
        st.just("grant"),
        customer_refs,
        st.sampled_from(["messages", "credits", "words"]),
        amounts,
        st.sampled_from([None, "week", "month"]),
        st.sampled_from([None, 3, 40]),
        entities,
    ),
    st.tuples(
        st.just("attach"),
        customer_refs,
        st.sampled_from((*PRODUCTS, "pro", "pro", "premium")),
        st.sampled_from(["unset", "none", "explicit"]),
        st.one_of(st.none(), st.sampled_from([10, 30])),
        st.one_of(st.none(), st.sampled_from(KEYS)),
        st.sampled_from(["fp1", None, "fp2"]),
    ),
    st.tuples(
        st.just("cancel"),
        customer_refs,
        st.sampled_from(["basic", "pro", "premium", "addon"]),
        st.booleans(),
    ),
    st.tuples(st.just("uncancel"), customer_refs, st.sampled_from(["basic", "pro", "premium"])),
    st.tuples(st.just("entity_create"), customer_refs, st.sampled_from(ENTITIES)),
    st.tuples(st.just("entity_delete"), customer_refs, st.sampled_from(ENTITIES)),
    st.tuples(st.just("advance"), st.sampled_from([1, 6, 13, 24 * 3, 24 * 8, 24 * 31])),
    st.tuples(st.just("process_due")),
)


# -- the bad calls (issue 19) ---------------------------------------------------------------------
def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"k": value}
    return value


_DEEP = _nested(5000)
_PLUS_14 = timezone(timedelta(hours=14))


def _at_the_end_of_time(billing: Autumn, clock: ManualClock, ref: Any) -> Any:
    """A clock read in the last hours of year 9999, put back afterwards."""
    now = clock.now()
    clock.set(datetime(9999, 12, 31, 20, tzinfo=UTC))
    try:
        return billing.track(ref, "messages")
    finally:
        clock.set(now)


#: name -> a call every store must refuse alike; the customer reference is drawn. Each class of
#: issue 19's bad input: NUL and lone surrogates, values JSON cannot hold, very deep nesting,
#: huge and over-precise numbers, times out of range, malformed calls.
BAD_CALLS: dict[str, Callable[[Autumn, ManualClock, Any], Any]] = {
    "id NUL": lambda b, c, ref: b.customers.create("a\x00"),
    "id surrogate": lambda b, c, ref: b.customers.create("a\ud800"),
    "name surrogate": lambda b, c, ref: b.customers.create(ref, name="n\udc00"),
    "update name NUL": lambda b, c, ref: b.customers.update(ref, name="n\x00"),
    "email NUL": lambda b, c, ref: b.customers.create("a", email="x\x00@example.com"),
    "fingerprint surrogate": lambda b, c, ref: b.customers.update(ref, fingerprint="\ud800"),
    "metadata object()": lambda b, c, ref: b.customers.update(ref, metadata={"k": object()}),
    "metadata set": lambda b, c, ref: b.customers.create(ref, metadata={"k": {1, 2}}),
    "metadata NaN": lambda b, c, ref: b.customers.update(ref, metadata={"k": float("nan")}),
    "metadata deep": lambda b, c, ref: b.customers.update(ref, metadata=_DEEP),
    "metadata huge int": lambda b, c, ref: b.customers.update(ref, metadata={"k": 10**400}),
    "metadata NUL key": lambda b, c, ref: b.customers.update(ref, metadata={"\x00": 1}),
    "properties object()": lambda b, c, ref: b.track(ref, "messages", properties={"o": object()}),
    "properties inf": lambda b, c, ref: b.track(ref, "messages", properties={"k": float("inf")}),
    "properties deep": lambda b, c, ref: b.track(ref, "messages", properties=_DEEP),
    "properties surrogate": lambda b, c, ref: b.track(ref, "words", properties={"k": "\udfff"}),
    "value 1e999999999": lambda b, c, ref: b.track(ref, "messages", value="1e999999999"),
    "value -1e999999999": lambda b, c, ref: b.track(ref, "messages", value="-1e999999999"),
    "value 10^16": lambda b, c, ref: b.track(ref, "messages", value=10**16),
    "value 13 places": lambda b, c, ref: b.track(ref, "messages", value="0.1234567890123"),
    "value NaN": lambda b, c, ref: b.track(ref, "messages", value="NaN"),
    "value inf float": lambda b, c, ref: b.track(ref, "messages", value=float("inf")),
    "value bool": lambda b, c, ref: b.track(ref, "messages", value=True),
    "grant 1e999999999": lambda b, c, ref: b.balances.grant(ref, "messages", "1e999999999"),
    "set 13 places": lambda b, c, ref: b.balances.set(ref, "words", remaining=Decimal("1E-13")),
    "check huge": lambda b, c, ref: b.check(ref, "messages", required_balance="9e99"),
    "timestamp year 1 +14:00": lambda b, c, ref: b.track(
        ref, "messages", timestamp=datetime(1, 1, 1, tzinfo=_PLUS_14)
    ),
    "timestamp naive": lambda b, c, ref: b.track(ref, "messages", timestamp=datetime(2025, 1, 1)),
    "events.list start year 1": lambda b, c, ref: b.events.list(
        ref, start=datetime(1, 1, 1, tzinfo=_PLUS_14)
    ),
    "clock in late 9999": _at_the_end_of_time,
    "track_many(5)": lambda b, c, ref: b.track_many(5),
    "track_many bad item": lambda b, c, ref: b.track_many(
        [TrackRequest("a", "messages"), TrackRequest("b", "messages", properties={"k": {1}})]
    ),
    "idempotency key NUL": lambda b, c, ref: b.track(ref, "messages", idempotency_key="k\x00"),
    "attach key surrogate": lambda b, c, ref: b.attach(ref, "pro", idempotency_key="\ud800"),
    "entity id NUL": lambda b, c, ref: b.entities.create(ref, "e\x00", "users"),
    "unknown feature": lambda b, c, ref: b.track(ref, "nope"),
    "unknown product": lambda b, c, ref: b.attach(ref, "nope"),
    "feature as int": lambda b, c, ref: b.check(ref, 5),
    "product as None": lambda b, c, ref: b.attach(ref, None),
    "set neither": lambda b, c, ref: b.balances.set(ref, "messages"),
    "entity of a metered feature": lambda b, c, ref: b.entities.create(ref, "e1", "messages"),
    "overage unknown": lambda b, c, ref: b.track(ref, "messages", overage="sometimes"),
    "events after unknown id": lambda b, c, ref: b.events.list(ref, starting_after="evt_x"),
    "list limit -1": lambda b, c, ref: b.customers.list(limit=-1),
    "customer as int": lambda b, c, ref: b.track(5, "messages"),
}
_bad = st.tuples(st.just("bad"), st.sampled_from(sorted(BAD_CALLS)), customer_refs)

_create, _track, _attach = _steps[0], _steps[1], _steps[5]
#: Weighted towards the calls that change state, so that most sequences reach trials shared
#: by fingerprint, upgrades, renewals and refunds.
steps = st.one_of(*_steps, _create, _track, _track, _attach, _attach, _attach, _bad, _bad)


def sequences(length: int) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """``length`` steps, the first two creating customers (so most calls find them)."""
    return st.builds(
        lambda head, tail: head + tail,
        st.lists(_create, min_size=2, max_size=2),
        st.lists(steps, min_size=length - 2, max_size=length - 2),
    )


def _free_trial(mode: str) -> Any:
    from autumn_core import UNSET

    return {"unset": UNSET, "none": None, "explicit": FreeTrial(3, card_required=False)}[mode]


def _call(billing: Autumn, clock: ManualClock, step: tuple[Any, ...]) -> Any:
    name, *args = step
    if name == "create":
        cid, email, fp = args
        return billing.customers.create(cid, email=email, fingerprint=fp)
    if name == "track":
        ref, feature, value, entity, overage, key = args
        target: dict[str, Any] = (
            {"event_name": feature[6:]} if feature.startswith("event:") else {"feature_id": feature}
        )
        if "event_name" in target and overage == "reject":
            overage = "cap"
        return billing.track(
            ref, value=value, entity_id=entity, overage=overage, idempotency_key=key, **target
        )
    if name == "check":
        ref, feature, required, entity, send = args
        return billing.check(
            ref, feature, required_balance=required, entity_id=entity, send_event=send
        )
    if name == "set":
        ref, feature, which, amount, entity = args
        return billing.balances.set(ref, feature, entity_id=entity, **{which: amount})
    if name == "grant":
        ref, feature, amount, reset, days, entity = args
        expires = None if days is None else clock.now() + timedelta(days=days)
        return billing.balances.grant(
            ref, feature, amount, reset=reset, expires_at=expires, entity_id=entity
        )
    if name == "attach":
        ref, product, trial, packs, key, fp = args
        quantities = {"credits": packs} if packs is not None and product == "credits_pack" else None
        return billing.attach(
            ref,
            product,
            free_trial=_free_trial(trial),
            quantities=quantities,
            idempotency_key=key,
            customer_data=CustomerData(fingerprint=fp) if fp else None,
        )
    if name == "cancel":
        ref, product, now = args
        return billing.cancel(ref, product, immediately=now)
    if name == "uncancel":
        ref, product = args
        return billing.uncancel(ref, product)
    if name == "entity_create":
        ref, entity = args
        return billing.entities.create(ref, entity, "users")
    if name == "entity_delete":
        ref, entity = args
        return billing.entities.delete(ref, entity)
    if name == "advance":
        (hours,) = args
        clock.advance(hours=hours)
        return None
    if name == "process_due":
        return billing.process_due()
    if name == "bad":
        call, ref = args
        return BAD_CALLS[call](billing, clock, ref)
    raise AssertionError(f"unknown step {step!r}")


def run_step(billing: Autumn, clock: ManualClock, step: tuple[Any, ...]) -> Any:
    """The outcome of one public call: its result as data, or ``error:<code>``."""
    try:
        return to_dict(_call(billing, clock, step))
    except AutumnError as exc:
        return f"error:{exc.code}"


def public_state(billing: Autumn) -> dict[str, Any]:
    """Everything a user can read back: customers (pre-created ones too), events, invoices."""
    out: dict[str, Any] = {"customers": to_dict(billing.customers.list(limit=1000))}
    for cid in IDS:
        try:
            out[cid] = {
                "customer": to_dict(billing.customers.get(cid)),
                "events": to_dict(billing.events.list(cid, limit=1000)),
                "invoices": to_dict(billing.invoices.list(cid)),
            }
        except AutumnError as exc:
            out[cid] = f"error:{exc.code}"
    return out
