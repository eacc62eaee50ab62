"""TOML reading and writing of a catalog (``autumn.toml``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import tomli_w

from autumn_core.catalog_records import Feature, FreeTrial, Item, Price, Product, Rollover, Tier
from autumn_core.errors import InvalidCatalog, InvalidRequest
from autumn_core.values import to_decimal


@attrs.frozen
class CatalogData:
    """A catalog as its TOML describes it, each key type-checked; ``Catalog`` validates it."""

    features: list[Feature]
    products: list[Product]
    allow_paid_default: bool


def _dec(value: Decimal) -> str:
    return "inf" if value.is_infinite() else str(value)


def catalog_to_toml(
    catalog_features: Iterable[Feature], catalog_products: Iterable[Product]
) -> str:
    features: list[dict[str, Any]] = []
    for f in catalog_features:
        d: dict[str, Any] = {"id": f.id, "type": f.type}
        if f.name is not None:
            d["name"] = f.name
        if f.event_names:
            d["event_names"] = list(f.event_names)
        if f.costs:
            d["costs"] = {k: _dec(v) for k, v in f.costs.items()}
        features.append(d)
    products: list[dict[str, Any]] = []
    for p in catalog_products:
        pd: dict[str, Any] = {"id": p.id}
        if p.name is not None:
            pd["name"] = p.name
        for flag in ("add_on", "default"):
            if getattr(p, flag):
                pd[flag] = True
        if p.group:
            pd["group"] = p.group
        if p.price is not None:
            pd["price"] = {
                "amount": _dec(p.price.amount),
                "interval": p.price.interval,
                "interval_count": p.price.interval_count,
            }
        if p.free_trial is not None:
            t = p.free_trial
            pd["free_trial"] = {
                "length": t.length,
                "duration": t.duration,
                "unique_fingerprint": t.unique_fingerprint,
                "card_required": t.card_required,
            }
        pd["items"] = [_item_to_dict(i) for i in p.items]
        products.append(pd)
    return tomli_w.dumps({"features": features, "products": products})


def _item_to_dict(item: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": item.kind, "feature_id": item.feature_id}
    if item.included is not None:
        d["included"] = _dec(item.included)
    if item.unlimited:
        d["unlimited"] = True
    d["reset"] = item.reset if item.reset is not None else "none"
    if item.reset_count != 1:
        d["reset_count"] = item.reset_count
    if item.per_entity is not None:
        d["per_entity"] = item.per_entity
    if item.rollover is not None:
        r = item.rollover
        rd: dict[str, Any] = {}
        if r.max is not None:
            rd["max"] = _dec(r.max)
        if r.max_percent is not None:
            rd["max_percent"] = _dec(r.max_percent)
        if r.expires_after_months is not None:
            rd["expires_after_months"] = r.expires_after_months
        d["rollover"] = rd
    if item.kind == "feature":
        if item.reset_usage_on_enable is not None:
            d["reset_usage_on_enable"] = item.reset_usage_on_enable
        return d
    if item.price is not None:
        d["price"] = _dec(item.price)
    if item.tiers is not None:
        d["tiers"] = [
            {"up_to": _dec(t.up_to), "amount": _dec(t.amount), "flat_amount": _dec(t.flat_amount)}
            for t in item.tiers
        ]
    d.update(
        tier_mode=item.tier_mode,
        billing=item.billing,
        billing_units=_dec(item.billing_units),
        interval=item.interval,
        interval_count=item.interval_count,
        on_increase=item.on_increase,
        on_decrease=item.on_decrease,
    )
    if item.max_purchase is not None:
        d["max_purchase"] = _dec(item.max_purchase)
    return d


FEATURE_KEYS = frozenset({"id", "type", "name", "event_names", "costs"})
PRODUCT_KEYS = frozenset(
    {"id", "name", "add_on", "default", "group", "price", "free_trial", "items"}
)
PRICE_KEYS = frozenset({"amount", "interval", "interval_count"})
TRIAL_KEYS = frozenset({"length", "duration", "unique_fingerprint", "card_required"})
ROLLOVER_KEYS = frozenset({"max", "max_percent", "expires_after_months"})
TIER_KEYS = frozenset({"up_to", "amount", "flat_amount"})
FEATURE_ITEM_KEYS = frozenset(
    {
        "kind",
        "feature_id",
        "included",
        "unlimited",
        "reset",
        "reset_count",
        "per_entity",
        "rollover",
        "reset_usage_on_enable",
    }
)
PRICED_ITEM_KEYS = (FEATURE_ITEM_KEYS - {"unlimited", "reset_usage_on_enable"}) | {
    "price",
    "tiers",
    "tier_mode",
    "billing",
    "billing_units",
    "interval",
    "interval_count",
    "max_purchase",
    "on_increase",
    "on_decrease",
}
TOP_KEYS = frozenset({"features", "products", "allow_paid_default"})

_MISSING: Any = object()
T = TypeVar("T")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:28]}...{text[-8:]}"


class _Table:
    """One TOML table being read, with where it sits (for the error messages)."""

    def __init__(self, data: Any, where: str, allowed: frozenset[str] | None) -> None:
        if not isinstance(data, Mapping):
            raise InvalidCatalog(f"{where} must be a table, got {_show(data)}")
        self.data = data
        self.where = where
        unknown = sorted(str(k) for k in data if allowed is not None and k not in allowed)
        if allowed is not None and unknown:
            raise InvalidCatalog(
                f"{where}: unknown key {unknown[0]!r} (expected one of {', '.join(sorted(allowed))})"
            )

    def bad(self, key: str, want: str, value: Any) -> InvalidCatalog:
        return InvalidCatalog(f"{self.where}: {key} must be {want}, got {_show(value)}")

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str, default: Any = _MISSING) -> Any:
        value = self.data.get(key, default)
        if value is _MISSING:
            raise InvalidCatalog(f"{self.where}: {key} is missing")
        if value is not default and not isinstance(value, str):
            raise self.bad(key, "a string", value)
        return value

    def flag(self, key: str, default: Any) -> Any:
        # TOML has real booleans; a string such as "false" is a mistake, never read as truthy.
        value = self.data.get(key, default)
        if value is not default and not isinstance(value, bool):
            raise self.bad(key, "true or false (unquoted)", value)
        return value

    def integer(self, key: str, default: Any) -> Any:
        value = self.data.get(key, default)
        if value is not default and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.bad(key, "an integer", value)
        return value

    def number(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.bad(key, "a number", value)
        try:
            return to_decimal(value, key)
        except InvalidRequest:
            raise self.bad(key, "a finite number", value) from None

    def strings(self, key: str) -> list[str]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.bad(key, "a list of strings", value)
        return value

    def tables(self, key: str) -> list[Any]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self.bad(key, "an array of tables", value)
        return value

    def sub(self, key: str, allowed: frozenset[str]) -> _Table | None:
        if key not in self.data:
            return None
        return _Table(self.data[key], f"{self.where}, {key}", allowed)


def _located(where: str, build: Callable[[], T]) -> T:
    """Run a constructor, naming ``where`` in the InvalidCatalog it raises."""
    try:
        return build()
    except InvalidRequest as exc:
        raise InvalidCatalog(f"{where}: {exc.message}") from None


def catalog_from_data(data: Mapping[str, Any]) -> CatalogData:
    """Build a catalog from parsed TOML, checking the type of every key on the way."""
    top = _Table(data, "the catalog", TOP_KEYS)
    features = [_feature(fd, n) for n, fd in enumerate(top.tables("features"), 1)]
    products = [_product(pd, n) for n, pd in enumerate(top.tables("products"), 1)]
    return CatalogData(features, products, top.flag("allow_paid_default", False))


def _feature(raw: Any, n: int) -> Feature:
    first = _Table(raw, f"feature #{n}", None)
    fid = first.text("id")
    t = _Table(raw, f"feature {fid!r}", FEATURE_KEYS)
    ftype = t.text("type", "metered")
    name = t.text("name", None)
    if ftype == "credit_system":
        costs = t.data.get("costs", {})
        if not isinstance(costs, Mapping):
            raise t.bad("costs", "a table of feature = cost", costs)
        parsed = {k: _Table(costs, f"{t.where}, costs", frozenset(costs)).number(k) for k in costs}
        return Feature.credit_system(fid, name, parsed)
    if t.has("costs"):
        raise InvalidCatalog(f"{t.where}: costs belong to a credit_system feature, not {ftype}")
    if ftype == "boolean":
        return Feature.boolean(fid, name)
    if ftype in ("metered", "allocated"):
        maker = Feature.metered if ftype == "metered" else Feature.allocated
        return maker(fid, name, t.strings("event_names"))
    raise InvalidCatalog(
        f"{t.where}: type must be one of boolean, metered, allocated, credit_system, got {ftype!r}"
    )


def _product(raw: Any, n: int) -> Product:
    pid = _Table(raw, f"product #{n}", None).text("id")
    t = _Table(raw, f"product {pid!r}", PRODUCT_KEYS)
    price = None
    pt = t.sub("price", PRICE_KEYS)
    if pt is not None:
        amount = pt.number("amount", _MISSING)
        if amount is _MISSING:
            raise InvalidCatalog(f"{pt.where}: amount is missing")
        interval = pt.text("interval", "month")
        count = pt.integer("interval_count", 1)
        price = _located(pt.where, lambda: Price(amount, interval, count))
    trial = None
    tt = t.sub("free_trial", TRIAL_KEYS)
    if tt is not None:
        length = tt.integer("length", _MISSING)
        if length is _MISSING:
            raise InvalidCatalog(f"{tt.where}: length is missing")
        duration = tt.text("duration", "day")
        unique = tt.flag("unique_fingerprint", False)
        card = tt.flag("card_required", True)
        trial = _located(tt.where, lambda: FreeTrial(length, duration, unique, card))
    items = [_item(t.where, raw_item, k) for k, raw_item in enumerate(t.tables("items"), 1)]
    return Product(
        pid,
        t.text("name", None),
        items=items,
        price=price,
        add_on=t.flag("add_on", False),
        default=t.flag("default", False),
        group=t.text("group", ""),
        free_trial=trial,
    )


def _item(product_where: str, raw: Any, k: int) -> Item:
    first = _Table(raw, f"{product_where}, item #{k}", None)
    fid = first.text("feature_id")
    kind = first.text("kind", "feature")
    if kind not in ("feature", "priced"):
        raise first.bad("kind", "'feature' or 'priced'", kind)
    allowed = FEATURE_ITEM_KEYS if kind == "feature" else PRICED_ITEM_KEYS
    t = _Table(raw, f"{product_where}, item {fid!r}", allowed)
    reset = t.text("reset", None)
    reset = None if reset == "none" else reset
    rollover = None
    rt = t.sub("rollover", ROLLOVER_KEYS)
    if rt is not None:
        rmax, rpct = rt.number("max"), rt.number("max_percent")
        months = rt.integer("expires_after_months", None)
        rollover = _located(rt.where, lambda: Rollover(rmax, rpct, months))
    common: dict[str, Any] = {
        "reset_count": t.integer("reset_count", 1),
        "per_entity": t.text("per_entity", None),
        "rollover": rollover,
    }
    if kind == "feature":
        return _located(
            t.where,
            lambda: Item.feature(
                fid,
                t.number("included"),
                unlimited=t.flag("unlimited", False),
                reset=reset,
                reset_usage_on_enable=t.flag("reset_usage_on_enable", None),
                **common,
            ),
        )
    tiers = None
    if t.has("tiers"):
        tiers = []
        for j, raw_tier in enumerate(t.tables("tiers"), 1):
            tier = _Table(raw_tier, f"{t.where}, tier #{j}", TIER_KEYS)
            up_to = tier.data.get("up_to", _MISSING)
            if up_to is _MISSING:
                raise InvalidCatalog(f"{tier.where}: up_to is missing")
            if up_to != "inf":
                up_to = tier.number("up_to")
            amount = tier.number("amount", _MISSING)
            if amount is _MISSING:
                raise InvalidCatalog(f"{tier.where}: amount is missing")
            flat = tier.number("flat_amount", Decimal(0))
            tiers.append(_located(tier.where, functools.partial(Tier, up_to, amount, flat)))
    if t.has("reset"):
        common["reset"] = reset
    return _located(
        t.where,
        lambda: Item.priced(
            fid,
            price=t.number("price"),
            tiers=tiers,
            tier_mode=t.text("tier_mode", "graduated"),
            billing=t.text("billing", "usage"),
            billing_units=t.number("billing_units", Decimal(1)),
            included=t.number("included", Decimal(0)),
            interval=t.text("interval", "month"),
            interval_count=t.integer("interval_count", 1),
            max_purchase=t.number("max_purchase"),
            on_increase=t.text("on_increase", "prorate_immediately"),
            on_decrease=t.text("on_decrease", "prorate_immediately"),
            **common,
        ),
    )
