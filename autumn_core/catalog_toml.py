"""TOML reading and writing of a catalog (``autumn.toml``)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import tomli_w

from autumn_core.errors import InvalidCatalog

if TYPE_CHECKING:
    from autumn_core.catalog import Catalog


def _dec(value: Decimal) -> str:
    return "inf" if value.is_infinite() else str(value)


def catalog_to_toml(catalog: Catalog) -> str:
    features: list[dict[str, Any]] = []
    for f in catalog.features:
        d: dict[str, Any] = {"id": f.id, "type": f.type}
        if f.name is not None:
            d["name"] = f.name
        if f.event_names:
            d["event_names"] = list(f.event_names)
        if f.costs:
            d["costs"] = {k: _dec(v) for k, v in f.costs.items()}
        features.append(d)
    products: list[dict[str, Any]] = []
    for p in catalog.products:
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


def catalog_from_data(cls: type[Catalog], data: Mapping[str, Any]) -> Catalog:
    from autumn_core.catalog import (
        Feature,
        FreeTrial,
        Item,
        Price,
        Product,
        Rollover,
        Tier,
    )

    try:
        features = []
        for fd in data.get("features", []):
            ftype = fd.get("type", "metered")
            if ftype == "credit_system":
                features.append(
                    Feature.credit_system(fd["id"], fd.get("name"), fd.get("costs", {}))
                )
            elif ftype == "boolean":
                features.append(Feature.boolean(fd["id"], fd.get("name")))
            elif ftype in ("metered", "allocated"):
                maker = Feature.metered if ftype == "metered" else Feature.allocated
                features.append(maker(fd["id"], fd.get("name"), fd.get("event_names", ())))
            else:
                raise InvalidCatalog(f"feature {fd.get('id')!r} has unknown type {ftype!r}")
        products = []
        for pd in data.get("products", []):
            items = []
            for idd in pd.get("items", []):
                reset = idd.get("reset")
                reset = None if reset == "none" else reset
                rollover = Rollover(**idd["rollover"]) if "rollover" in idd else None
                if idd.get("kind", "feature") == "feature":
                    items.append(
                        Item.feature(
                            idd["feature_id"],
                            idd.get("included"),
                            unlimited=idd.get("unlimited", False),
                            reset=reset,
                            reset_count=idd.get("reset_count", 1),
                            per_entity=idd.get("per_entity"),
                            rollover=rollover,
                            reset_usage_on_enable=idd.get("reset_usage_on_enable"),
                        )
                    )
                else:
                    tiers = [Tier(**t) for t in idd["tiers"]] if "tiers" in idd else None
                    kwargs: dict[str, Any] = {}
                    if "reset" in idd:
                        kwargs["reset"] = reset
                    items.append(
                        Item.priced(
                            idd["feature_id"],
                            price=idd.get("price"),
                            tiers=tiers,
                            tier_mode=idd.get("tier_mode", "graduated"),
                            billing=idd.get("billing", "usage"),
                            billing_units=idd.get("billing_units", 1),
                            included=idd.get("included", 0),
                            interval=idd.get("interval", "month"),
                            interval_count=idd.get("interval_count", 1),
                            reset_count=idd.get("reset_count", 1),
                            max_purchase=idd.get("max_purchase"),
                            on_increase=idd.get("on_increase", "prorate_immediately"),
                            on_decrease=idd.get("on_decrease", "prorate_immediately"),
                            rollover=rollover,
                            per_entity=idd.get("per_entity"),
                            **kwargs,
                        )
                    )
            price = Price(**pd["price"]) if "price" in pd else None
            trial = FreeTrial(**pd["free_trial"]) if "free_trial" in pd else None
            products.append(
                Product(
                    pd["id"],
                    pd.get("name"),
                    items=items,
                    price=price,
                    add_on=pd.get("add_on", False),
                    default=pd.get("default", False),
                    group=pd.get("group", ""),
                    free_trial=trial,
                )
            )
    except (KeyError, TypeError) as exc:
        raise InvalidCatalog(f"catalog data is malformed: {exc!r}") from None
    return cls(features, products, allow_paid_default=bool(data.get("allow_paid_default", False)))
