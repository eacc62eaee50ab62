"""The RPC operations: a request body in, an Autumn response object out, on a sync ``Autumn``.

Shared by the API app (``/v1/<resource>.<verb>``), its legacy aliases and the frontend
handler; each runs on a worker thread, so it may block on the store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from autumn_core import (
    UNSET,
    Autumn,
    Conflict,
    CustomerData,
    CustomerNotFound,
    EntityNotFound,
    FeatureNotFound,
    NotFound,
    ProductAlreadyAttached,
)
from autumn_core.errors import AutumnError
from autumn_wire.body import Body, sub
from autumn_wire.controls import read_controls, read_lock
from autumn_wire.errors import WireError, invalid_inputs
from autumn_wire.shapes import Json, Shapes, num

#: Keys that shape Autumn's hosted dashboard, edge cache or emails: read and ignored.
COSMETIC = ("expand", "send_email_receipts", "with_preview", "properties_filter")


class Wire:
    """An engine and the response builders for one API app."""

    def __init__(self, billing: Autumn, *, env: str, currency: str) -> None:
        self.billing = billing
        self.shapes = Shapes(billing.catalog, env=env, currency=currency)


Op = Callable[[Wire, Body, "str | None"], Json]


def customer_data(b: Body, key: str = "customer_data") -> CustomerData | None:
    raw = b.obj(key)
    if raw is None:
        return None
    d = sub(key, raw)
    out = CustomerData(
        name=d.str_("name"),
        email=d.str_("email"),
        fingerprint=d.str_("fingerprint"),
        metadata=d.obj("metadata"),
    )
    d.done()
    return out


def _expand(b: Body) -> set[str]:
    return set(b.str_list("expand"))


# -- customers ------------------------------------------------------------------------------
def get_or_create(w: Wire, b: Body, idem: str | None) -> Json:
    if not b.has("customer_id"):
        raise invalid_inputs("customer_id: required (null when the customer has no id yet)")
    cid = b.str_("customer_id")
    fields: dict[str, Any] = {
        "name": b.str_("name"),
        "email": b.str_("email"),
        "fingerprint": b.str_("fingerprint"),
        "metadata": b.obj("metadata"),
        "gateway_customer_id": b.str_("stripe_id"),
    }
    b.bool_("create_in_stripe")  # a provider customer is made by the first paid attach
    controls = read_controls(b)
    if controls is not UNSET:
        fields["billing_controls"] = controls
    expand = _expand(b)
    b.done()
    if cid is None and fields["email"] is None:
        raise WireError(400, "invalid_request", "Either customer ID or email is required")
    c = w.billing.customers.create(cid, **fields)
    return _customer(w, c, expand)


def _customer(w: Wire, c: Any, expand: set[str]) -> Json:
    invoices = None
    if "invoices" in expand and c.id is not None:
        invoices = w.billing.invoices.list(c.id)
    return w.shapes.customer(c, invoices=invoices)


def get_customer(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.req_str("customer_id")
    expand = _expand(b)
    b.done()
    return _customer(w, w.billing.customers.get(cid), expand)


def list_customers(w: Wire, b: Body, idem: str | None) -> Json:
    cursor = b.str_("start_cursor") or None
    limit = b.int_("limit", low=1, high=1000) or 50
    search = (b.str_("search") or "").strip().lower()
    b.enum("sort_order", ("asc",))
    b.done()
    if not search:
        page = w.billing.customers.list(limit=limit, starting_after=cursor)
    else:  # Autumn's search: a case-insensitive substring of id, name or email
        page, after = [], cursor
        while len(page) < limit:
            batch = w.billing.customers.list(limit=1000, starting_after=after)
            for c in batch:
                if any(search in (v or "").lower() for v in (c.id, c.name, c.email)):
                    page.append(c)
            if len(batch) < 1000 or batch[-1].id is None:
                break
            after = batch[-1].id
        page = page[:limit]
    last = page[-1].id if page else None
    return {
        "list": [w.shapes.customer(c) for c in page],
        "next_cursor": last if len(page) == limit else None,
    }


def update_customer(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.req_str("customer_id")
    patch: dict[str, Any] = {}
    for key, field in (("name", "name"), ("email", "email"), ("fingerprint", "fingerprint")):
        if b.has(key):
            patch[field] = b.str_(key)
    if b.has("metadata"):
        patch["metadata"] = b.obj("metadata") or {}
    if b.has("new_customer_id"):
        patch["new_id"] = b.req_str("new_customer_id")
    controls = read_controls(b)
    if controls is not UNSET:
        patch["billing_controls"] = controls
    b.done()
    return w.shapes.customer(w.billing.customers.update(cid, **patch))


def delete_customer(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.req_str("customer_id")
    b.bool_("delete_in_stripe")
    b.done()
    w.billing.customers.delete(cid)
    return {"success": True}


# -- check and track ------------------------------------------------------------------------
def check(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.req_str("customer_id")
    fid = b.req_str("feature_id")
    eid = b.str_("entity_id")
    required = b.num("required_balance")
    send_event = b.bool_("send_event")
    b.obj("properties")
    data = customer_data(b)
    lock = read_lock(b)
    b.done()
    r = w.billing.check(
        cid,
        fid,
        required_balance=Decimal(1) if required is None else required,
        entity_id=eid,
        send_event=send_event,
        customer_data=data,
        lock=lock,
    )
    bal = r.balance
    is_flag = bal is not None and w.shapes.is_flag(bal)
    flag = None
    if is_flag and r.allowed and bal is not None:
        products = w.billing.customers.get(cid).products if cid else []
        flag = w.shapes.flag(bal, products)
    out = {
        "allowed": r.allowed,
        "customer_id": r.customer_id or cid,
        "entity_id": r.entity_id,
        "required_balance": num(r.required_balance),
        "balance": None if bal is None or is_flag else w.shapes.balance(bal),
        "flag": flag,
    }
    if r.lock_id is not None:
        out["lock_id"] = r.lock_id  # the lock held (generated when the request named none)
    return out


def track(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.req_str("customer_id")
    fid = b.str_("feature_id")
    event = b.str_("event_name")
    if (fid is None) == (event is None):
        raise invalid_inputs("exactly one of feature_id and event_name is required")
    value = b.num("value")
    overage = b.enum("overage_behavior", ("cap", "overflow", "reject")) or "cap"
    body_key = b.str_("idempotency_key", max_len=255)
    if body_key is not None and idem is not None and body_key != idem:
        raise invalid_inputs("idempotency_key differs from the Idempotency-Key header")
    key = body_key or idem
    entity = b.str_("entity_id")
    properties = b.obj("properties")
    timestamp = b.ms("timestamp")
    data = customer_data(b)
    b.bool_("async")  # always applied synchronously: answered 200 with the new balance
    b.done()
    r = w.billing.track(
        cid,
        fid,
        event_name=event,
        value=Decimal(1) if value is None else value,
        entity_id=entity,
        idempotency_key=key,
        properties=properties,
        timestamp=timestamp,
        overage=overage,
        customer_data=data,
    )
    if r.replayed:  # Autumn never replays: a reused key is a conflict
        raise WireError(
            409,
            "duplicate_idempotency_key",
            f"Another request with idempotency key {key} has already been received",
        )
    main = fid if fid is not None else next(iter(r.applied), None)
    bal = r.balances.get(main) if main is not None else None
    return {
        "customer_id": r.customer_id or cid,
        "entity_id": r.entity_id,
        "event_name": event,
        "value": num(r.value),
        "balance": None if bal is None or w.shapes.is_flag(bal) else w.shapes.balance(bal),
        "balances": {
            k: w.shapes.balance(v) for k, v in r.balances.items() if not w.shapes.is_flag(v)
        },
    }


# -- balances -------------------------------------------------------------------------------
def create_balance(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.req_str("customer_id")
    fid = b.req_str("feature_id")
    amount = b.num("included_grant", required=True)
    assert amount is not None
    reset = None
    raw_reset = b.obj("reset")
    if raw_reset is not None:
        r = sub("reset", raw_reset)
        reset = r.req_str("interval")
        if (r.int_("interval_count", low=1, high=1) or 1) != 1:
            raise invalid_inputs("reset.interval_count: only 1 is supported")
        r.done()
    expires_at = b.ms("expires_at")
    entity = b.str_("entity_id")
    b.done()
    w.billing.balances.grant(cid, fid, amount, reset=reset, expires_at=expires_at, entity_id=entity)
    return {"success": True}


def update_balance(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.req_str("customer_id")
    fid = b.req_str("feature_id")
    eid = b.str_("entity_id")
    remaining, usage, add = b.num("remaining"), b.num("usage"), b.num("add_to_balance")
    b.done()
    given = [
        k
        for k, v in (("remaining", remaining), ("usage", usage), ("add_to_balance", add))
        if v is not None
    ]
    if len(given) != 1:
        raise invalid_inputs("exactly one of remaining, usage and add_to_balance is required")
    if add is not None:
        w.billing.balances.grant(cid, fid, add, entity_id=eid)
    else:
        w.billing.balances.set(cid, fid, remaining=remaining, usage=usage, entity_id=eid)
    return {"success": True}


#: Autumn's reset intervals; "one_off" is a balance that never resets.
_INTERVALS = ("one_off", "minute", "hour", "day", "week", "month", "quarter", "semi_annual", "year")


def delete_balance(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.req_str("customer_id")
    fid = b.str_("feature_id")
    bid = b.str_("balance_id")
    eid = b.str_("entity_id")
    recalculate = b.bool_("recalculate_balances")
    interval = b.enum("interval", _INTERVALS)
    b.done()
    if fid is None and bid is None:
        raise invalid_inputs("one of feature_id and balance_id is required")
    if recalculate and fid is None:
        raise WireError(
            400, "invalid_request", "feature_id is required when recalculate_balances is true"
        )
    reset: Any = UNSET if interval is None else (None if interval == "one_off" else interval)
    try:
        w.billing.balances.delete(
            cid, fid, balance_id=bid, entity_id=eid, interval=reset, recalculate=recalculate
        )
    except NotFound as exc:
        if isinstance(exc, CustomerNotFound | FeatureNotFound | EntityNotFound):
            raise
        raise WireError(
            404, "invalid_request", f"Balance not found for feature {fid} and customer {cid}"
        ) from None
    except Conflict as exc:
        raise WireError(409, "invalid_request", exc.message) from None
    return {"success": True}


# -- entities -------------------------------------------------------------------------------
def create_entity(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.req_str("customer_id")
    eid = b.req_str("entity_id")
    fid = b.req_str("feature_id")
    name = b.str_("name")
    data = customer_data(b)
    controls = read_controls(b)
    b.done()
    if data is not None:
        w.billing.customers.create(
            cid,
            name=data.name,
            email=data.email,
            fingerprint=data.fingerprint,
            metadata=dict(data.metadata) if data.metadata else None,
        )
    return w.shapes.entity(
        w.billing.entities.create(
            cid, eid, fid, name=name, billing_controls=None if controls is UNSET else controls
        )
    )


def _entity_customer(b: Body) -> str:
    cid = b.str_("customer_id")
    if cid is None:
        raise invalid_inputs(
            "customer_id: required by the embedded engine (entity ids are per customer)"
        )
    return cid


def get_entity(w: Wire, b: Body, idem: str | None) -> Json:
    eid = b.req_str("entity_id")
    cid = _entity_customer(b)
    b.done()
    return w.shapes.entity(w.billing.entities.get(cid, eid))


def list_entities(w: Wire, b: Body, idem: str | None) -> Json:
    cid = _entity_customer(b)
    b.str_("start_cursor")
    b.int_("limit", low=1, high=1000)
    b.done()
    return {"list": [w.shapes.entity(e) for e in w.billing.entities.list(cid)], "next_cursor": None}


def delete_entity(w: Wire, b: Body, idem: str | None) -> Json:
    eid = b.req_str("entity_id")
    cid = _entity_customer(b)
    b.done()
    w.billing.entities.delete(cid, eid)
    return {"success": True}


# -- catalog --------------------------------------------------------------------------------
def list_plans(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.str_("customer_id")
    eid = b.str_("entity_id")
    b.bool_("include_archived")
    every = b.bool_("all_versions")
    b.done()
    plans = [w.shapes.plan(v) for v in w.billing.products.versions() if every or v.latest]
    if cid is not None:
        held = {
            p.id: p
            for p in (
                w.billing.entities.get(cid, eid).products
                if eid is not None
                else w.billing.customers.get(cid).products
            )
        }
        for plan in plans:
            plan["customer_eligibility"] = _eligibility(w, cid, eid, plan["id"], held)
    return {"list": plans}


_ACTIONS = {"new": "activate", "upgrade": "upgrade", "downgrade": "downgrade"}


def _eligibility(w: Wire, cid: str, eid: str | None, plan_id: str, held: dict[str, Any]) -> Json:
    product = w.billing.catalog.product(plan_id)
    assert product is not None
    cp = held.get(plan_id)
    out: Json = {"attach_action": "none"}
    if cp is not None:
        out["status"] = "scheduled" if cp.status == "scheduled" else "active"
        out["canceling"] = cp.canceled_at is not None
        out["trialing"] = cp.status == "trialing"
    try:
        preview = w.billing.preview_attach(cid, plan_id, entity_id=eid)
    except ProductAlreadyAttached:
        return out
    except AutumnError:
        return out
    if cp is None or product.add_on or product.is_one_off:
        out["attach_action"] = _ACTIONS.get(preview.scenario, "purchase")
    # The trial is granted by this attach when a priced plan would charge nothing now (T1-T5).
    priced = product.price is not None and product.price.amount > 0
    out["trial_available"] = bool(
        product.free_trial is not None
        and preview.scenario in ("new", "upgrade")
        and (not priced or preview.due_now == 0)
    )
    return out


def get_plan(w: Wire, b: Body, idem: str | None) -> Json:
    pid = b.req_str("plan_id")
    version = b.int_("version", low=1, high=1_000_000)
    b.done()
    if w.billing.catalog.product(pid) is None:
        raise WireError(404, "product_not_found", f"Plan {pid} not found")
    for v in w.billing.products.versions(pid):
        if v.version == version or (version is None and v.latest):
            return w.shapes.plan(v)
    raise WireError(404, "product_not_found", f"Plan {pid} has no version {version}")


def list_features(w: Wire, b: Body, idem: str | None) -> Json:
    b.bool_("include_archived")
    b.done()
    return {"list": [w.shapes.feature(f) for f in w.billing.catalog.features]}


def get_feature(w: Wire, b: Body, idem: str | None) -> Json:
    fid = b.req_str("feature_id")
    b.done()
    f = w.billing.catalog.feature(fid)
    if f is None:
        raise WireError(404, "feature_not_found", f"Feature {fid} not found")
    return w.shapes.feature(f)


# -- events ---------------------------------------------------------------------------------
_RANGES = {"24h": 1, "7d": 7, "30d": 30, "90d": 90}


def list_events(w: Wire, b: Body, idem: str | None) -> Json:
    cid = b.str_("customer_id")
    if cid is None:
        raise invalid_inputs("customer_id: required by the embedded engine")
    cursor = b.str_("start_cursor") or None
    limit = b.int_("limit", low=1, high=1000) or 100
    raw_fid = b.raw("feature_id")
    fids: list[str] | None
    if raw_fid is None:
        fids = None
    elif isinstance(raw_fid, str):
        fids = [raw_fid]
    else:
        fids = b.str_list("feature_id")
    entity = b.str_("entity_id")
    start = end = None
    rng = b.enum("range", tuple(_RANGES))
    if rng is not None:
        start = w.billing.clock.now() - timedelta(days=_RANGES[rng])
    raw_custom = b.obj("custom_range")
    if raw_custom is not None:
        c = sub("custom_range", raw_custom)
        start, end = c.ms("start"), c.ms("end")
        c.done()
    b.done()
    events = w.billing.events.list(
        cid,
        feature_id=fids[0] if fids and len(fids) == 1 else None,
        start=start,
        end=end,
        limit=limit,
        starting_after=cursor,
    )
    full = len(events) == limit
    last = events[-1].id if events else None
    if fids is not None:
        events = [e for e in events if e.feature_id in fids]
    if entity is not None:
        events = [e for e in events if e.entity_id == entity]
    return {"list": [w.shapes.event(e, cid) for e in events], "next_cursor": last if full else None}
