"""The catalog: features, products, their items and prices, and the rules a catalog must keep.

Catalog types are frozen attrs value objects (``catalog_records``, re-exported here). ``Catalog``
validates on construction and raises ``InvalidCatalog`` naming the product and item at fault
(docs/rules.md 2.2); its TOML form is read and written by ``catalog_toml``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from autumn_core import catalog_toml
from autumn_core.catalog_records import (
    DEFAULT_RESET,
    INF,
    INTERVAL_MONTHS,
    MAX_CYCLE_MONTHS,
    MAX_INTERVAL_COUNT,
    MAX_RESET_COUNT,
    MAX_ROLLOVER_MONTHS,
    MAX_TRIAL,
    ON_DECREASE,
    ON_INCREASE,
    PRICE_INTERVALS,
    RESET_INTERVALS,
    TRIAL_DURATIONS,
    Feature,
    FeatureType,
    FreeTrial,
    Item,
    Price,
    PriceInterval,
    Product,
    ResetInterval,
    Rollover,
    Tier,
    is_int,
    shown,
)
from autumn_core.errors import InvalidCatalog, InvalidRequest
from autumn_core.values import check_id

__all__ = [
    "INF",
    "INTERVAL_MONTHS",
    "MAX_CYCLE_MONTHS",
    "MAX_INTERVAL_COUNT",
    "MAX_RESET_COUNT",
    "MAX_ROLLOVER_MONTHS",
    "MAX_TRIAL",
    "ON_DECREASE",
    "ON_INCREASE",
    "PRICE_INTERVALS",
    "RESET_INTERVALS",
    "TRIAL_DURATIONS",
    "Catalog",
    "Feature",
    "FeatureType",
    "FreeTrial",
    "Item",
    "Price",
    "PriceInterval",
    "Product",
    "ResetInterval",
    "Rollover",
    "Tier",
]


def _catalog_id(value: Any, what: str) -> str:
    try:
        return check_id(value, what)
    except InvalidRequest as exc:
        raise InvalidCatalog(exc.message) from None


def _opt_text(value: Any, what: str) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidCatalog(f"{what} must be a string, got {shown(value)}")


def _check_feature(f: Feature) -> None:
    _catalog_id(f.id, "feature id")
    where = f"feature {f.id!r}"
    _opt_text(f.name, f"{where}: name")
    if f.type not in ("boolean", "metered", "allocated", "credit_system"):
        raise InvalidCatalog(f"{where} has unknown type {shown(f.type)}")
    for name in f.event_names:
        _catalog_id(name, f"{where}: event name")
    if not isinstance(f.costs, Mapping):
        raise InvalidCatalog(
            f"{where}: costs must be a table of feature = cost, got {shown(f.costs)}"
        )


def _cycle_error(interval: str, count: Any) -> str | None:
    """Why ``count`` intervals is not a billing cycle the calendar can keep (None when it is)."""
    if not is_int(count) or not 1 <= count <= MAX_INTERVAL_COUNT:
        return f"interval_count must be an integer in 1..{MAX_INTERVAL_COUNT}, got {shown(count)}"
    if interval == "one_off" and count != 1:
        return f"a one_off price takes interval_count 1, got {count}"
    months = INTERVAL_MONTHS.get(interval, Decimal(0)) * count
    if months > MAX_CYCLE_MONTHS:
        return f"a cycle of {count} {interval} is longer than {MAX_CYCLE_MONTHS} months"
    return None


def _check_item_fields(item: Item, bad: Any) -> None:
    """The scalar fields of an item have their types and ranges (before any rule reads them)."""
    if not is_int(item.reset_count) or not 1 <= item.reset_count <= MAX_RESET_COUNT:
        raise bad(
            f"reset_count must be an integer in 1..{MAX_RESET_COUNT}, got {shown(item.reset_count)}"
        )
    if not isinstance(item.unlimited, bool):
        raise bad(f"unlimited must be true or false, got {shown(item.unlimited)}")
    if item.reset_usage_on_enable is not None and not isinstance(item.reset_usage_on_enable, bool):
        raise bad(
            f"reset_usage_on_enable must be true or false, got {shown(item.reset_usage_on_enable)}"
        )
    for key in ("reset", "per_entity", "billing", "interval"):
        value = getattr(item, key)
        if value is not None and not isinstance(value, str):
            raise bad(f"{key} must be a string, got {shown(value)}")
    for key in ("tier_mode", "on_increase", "on_decrease"):
        if not isinstance(getattr(item, key), str):
            raise bad(f"{key} must be a string, got {shown(getattr(item, key))}")
    if item.rollover is not None and not isinstance(item.rollover, Rollover):
        raise bad(f"rollover must be a Rollover, got {shown(item.rollover)}")


def _check_rollover(r: Rollover, bad: Any) -> None:
    if r.max is not None and r.max < 0:
        raise bad(f"rollover max must be >= 0, got {r.max}")
    if r.max_percent is not None and not 0 <= r.max_percent <= 100:
        raise bad(f"rollover max_percent must be in 0..100, got {r.max_percent}")
    months = r.expires_after_months
    if months is not None and (not is_int(months) or not 1 <= months <= MAX_ROLLOVER_MONTHS):
        raise bad(
            f"rollover expires_after_months must be an integer in 1..{MAX_ROLLOVER_MONTHS},"
            f" got {shown(months)}"
        )


class Catalog:
    """A validated set of features and products."""

    __slots__ = ("_features", "_listeners", "_pools", "_products", "features", "products")

    def __init__(
        self,
        features: Iterable[Feature] = (),
        products: Iterable[Product] = (),
        *,
        allow_paid_default: bool = False,
    ) -> None:
        if not isinstance(allow_paid_default, bool):
            raise InvalidCatalog(
                f"allow_paid_default must be true or false, got {shown(allow_paid_default)}"
            )
        self.features: tuple[Feature, ...] = tuple(features)
        raw_products = tuple(products)
        self._features: dict[str, Feature] = {}
        for f in self.features:
            if not isinstance(f, Feature):
                raise InvalidCatalog(f"features must be Feature objects, got {shown(f)}")
            _check_feature(f)
            if f.id in self._features:
                raise InvalidCatalog(f"feature {f.id!r} is defined twice")
            self._features[f.id] = f
        for f in self.features:
            if f.type == "credit_system":
                for member, cost in f.costs.items():
                    target = self._features.get(member)
                    if target is None:
                        raise InvalidCatalog(
                            f"credit system {f.id!r} costs unknown feature {member!r}"
                        )
                    if target.type != "metered":
                        raise InvalidCatalog(
                            f"credit system {f.id!r} costs {member!r}, which is {target.type}, not metered"
                        )
                    if cost <= 0:
                        raise InvalidCatalog(
                            f"credit system {f.id!r}: cost of {member!r} must be > 0"
                        )
        resolved: list[Product] = []
        seen: set[str] = set()
        for p in raw_products:
            if not isinstance(p, Product):
                raise InvalidCatalog(f"products must be Product objects, got {p!r}")
            if p.id in seen:
                raise InvalidCatalog(f"product {p.id!r} is defined twice")
            seen.add(p.id)
            resolved.append(self._validate_product(p, allow_paid_default))
        defaults: dict[str, list[str]] = {}
        for p in resolved:
            if p.default:
                defaults.setdefault(p.group, []).append(p.id)
        for group, ids in defaults.items():
            if len(ids) > 1:
                raise InvalidCatalog(f"group {group!r} has two default products: {ids}")
        self.products: tuple[Product, ...] = tuple(resolved)
        self._products = {p.id: p for p in self.products}
        self._listeners: dict[str, tuple[str, ...]] = {}
        for f in self.features:
            for name in f.event_names:
                self._listeners[name] = (*self._listeners.get(name, ()), f.id)
        self._pools: dict[str, tuple[str, ...]] = {}
        for f in self.features:
            for member in f.costs:
                self._pools[member] = (*self._pools.get(member, ()), f.id)

    # -- lookups ---------------------------------------------------------------------------
    def feature(self, feature_id: str) -> Feature | None:
        return self._features.get(feature_id)

    def product(self, product_id: str) -> Product | None:
        return self._products.get(product_id)

    def listeners(self, event_name: str) -> tuple[str, ...]:
        return self._listeners.get(event_name, ())

    def pools_of(self, feature_id: str) -> tuple[str, ...]:
        """Credit systems whose costs list this feature."""
        return self._pools.get(feature_id, ())

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Catalog)
            and self.features == other.features
            and self.products == other.products
        )

    def __hash__(self) -> int:
        return hash((self.features, self.products))

    def __repr__(self) -> str:
        return f"Catalog(features={list(self.features)!r}, products={list(self.products)!r})"

    # -- validation ------------------------------------------------------------------------
    def _validate_product(self, p: Product, allow_paid_default: bool) -> Product:
        def bad(msg: str, item: Item | None = None) -> InvalidCatalog:
            where = f"product {p.id!r}" + (f", item {item.feature_id!r}" if item else "")
            return InvalidCatalog(f"{where}: {msg}")

        _catalog_id(p.id, "product id")
        _opt_text(p.name, f"product {p.id!r}: name")
        if not isinstance(p.group, str):
            raise bad(f"group must be a string, got {shown(p.group)}")
        for flag in ("add_on", "default"):
            if not isinstance(getattr(p, flag), bool):
                raise bad(f"{flag} must be true or false, got {shown(getattr(p, flag))}")
        if p.free_trial is not None and not isinstance(p.free_trial, FreeTrial):
            raise bad(f"free_trial must be a FreeTrial, got {shown(p.free_trial)}")
        if p.price is not None:
            if not isinstance(p.price, Price):
                raise bad(f"price must be a Price, got {shown(p.price)}")
            if p.price.interval not in PRICE_INTERVALS:
                raise bad(f"price interval {p.price.interval!r} is not one of {PRICE_INTERVALS}")
            if p.price.amount < 0:
                raise bad(f"negative price amount {p.price.amount}")
            cycle = _cycle_error(p.price.interval, p.price.interval_count)
            if cycle:
                raise bad(f"price {cycle}")
        items: list[Item] = []
        for item in p.items:
            if not isinstance(item, Item):
                raise bad(f"items must be Item objects, got {shown(item)}")
            if not isinstance(item.feature_id, str):
                raise bad(f"item feature_id must be a string, got {shown(item.feature_id)}")
            feature = self._features.get(item.feature_id)
            if feature is None:
                raise bad("unknown feature", item)
            items.append(self._validate_item(p, item, feature, bad))
        resolved = attrs.evolve(p, items=tuple(items))
        if p.default and not (resolved.is_free or resolved.card_less_trial or allow_paid_default):
            raise bad("default=True on a product that is neither free nor a card-less trial")
        if p.default and p.add_on:
            raise bad("an add-on cannot be a default product")
        return resolved

    def _validate_item(self, p: Product, item: Item, feature: Feature, bad: Any) -> Item:
        ftype = feature.type
        _check_item_fields(item, lambda msg: bad(msg, item))
        if item.included is not None and item.included < 0:
            raise bad(f"negative included {item.included}", item)
        if ftype == "boolean":
            if item.is_priced or item.included is not None or item.unlimited or item.reset:
                raise bad("a boolean item takes no included, unlimited, reset or price", item)
            return item
        if item.per_entity is not None:
            target = self._features.get(item.per_entity)
            if target is None or target.type != "allocated":
                raise bad(f"per_entity {item.per_entity!r} is not an allocated feature", item)
        reset = item.reset
        if item.is_priced:
            if item.interval not in PRICE_INTERVALS:
                raise bad(f"interval {item.interval!r} is not one of {PRICE_INTERVALS}", item)
            if item.billing not in ("usage", "prepaid"):
                raise bad(f"billing must be 'usage' or 'prepaid', got {item.billing!r}", item)
            if reset == DEFAULT_RESET:
                reset = (
                    None if (item.interval == "one_off" or ftype == "allocated") else item.interval
                )
            if (item.price is None) == (item.tiers is None):
                raise bad("give exactly one of price / tiers", item)
            if item.price is not None and item.price < 0:
                raise bad(f"negative price {item.price}", item)
            if item.billing == "usage" and item.interval == "one_off":
                raise bad("billing='usage' cannot have interval='one_off'", item)
            if item.billing_units <= 0:
                raise bad(f"billing_units must be > 0, got {item.billing_units}", item)
            if item.billing == "usage" and ftype == "metered" and reset != item.interval:
                raise bad("a usage-billed metered item must reset at its billing interval", item)
            if item.billing == "prepaid" and (item.included or 0) % item.billing_units != 0:
                raise bad(
                    f"prepaid included {item.included} is not a multiple of billing_units "
                    f"{item.billing_units}",
                    item,
                )
            if item.tier_mode not in ("graduated", "volume"):
                raise bad(
                    f"tier_mode must be 'graduated' or 'volume', got {item.tier_mode!r}", item
                )
            if item.tiers is not None:
                if not item.tiers:
                    raise bad("tiers are empty", item)
                prev = Decimal(0)
                for tier in item.tiers:
                    if tier.amount < 0 or tier.flat_amount < 0:
                        raise bad("negative tier amount", item)
                    if tier.up_to <= prev:
                        raise bad("tiers are not strictly ascending", item)
                    prev = tier.up_to
                    if item.tier_mode == "graduated" and tier.flat_amount != 0:
                        raise bad("a graduated tier has a flat_amount", item)
                if item.tiers[-1].up_to != INF:
                    raise bad("the last tier must have up_to=INF", item)
            if item.max_purchase is not None and item.max_purchase < 0:
                raise bad("negative max_purchase", item)
            if item.on_increase not in ON_INCREASE:
                raise bad(f"on_increase {item.on_increase!r} is not one of {ON_INCREASE}", item)
            if item.on_decrease not in ON_DECREASE:
                raise bad(f"on_decrease {item.on_decrease!r} is not one of {ON_DECREASE}", item)
        if item.is_priced:
            cycle = _cycle_error(str(item.interval), item.interval_count)
            if cycle:
                raise bad(cycle, item)
        if reset is not None and reset not in RESET_INTERVALS:
            raise bad(f"reset {reset!r} is not one of {RESET_INTERVALS}", item)
        if ftype == "allocated" and reset is not None:
            raise bad("an allocated item cannot reset", item)
        if item.rollover is not None:
            if ftype not in ("metered", "credit_system") or reset is None:
                raise bad("a rollover needs a metered item with a reset", item)
            if item.rollover.max is not None and item.rollover.max_percent is not None:
                raise bad("a rollover takes max or max_percent, not both", item)
            _check_rollover(item.rollover, lambda msg: bad(msg, item))
        reset_on_enable = item.reset_usage_on_enable
        if reset_on_enable is None or item.is_priced:
            reset_on_enable = ftype != "allocated"
        return attrs.evolve(item, reset=reset, reset_usage_on_enable=reset_on_enable)

    # -- TOML ------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Catalog:
        """Read and validate a catalog file (``autumn.toml``); see docs/catalog.md.

        Every problem is one ``InvalidCatalog`` naming the file, and the product, item and key
        at fault::

            catalog = Catalog.from_file("autumn.toml")
        """
        name = os.fspath(path)
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise InvalidCatalog(f"cannot read catalog {name}: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidCatalog(
                f"catalog {name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset"
                f" {exc.start}); save it as UTF-8"
            ) from None
        try:
            return cls.from_toml(text)
        except InvalidCatalog as exc:
            raise InvalidCatalog(f"catalog {name}: {exc.message}") from None

    @classmethod
    def from_toml(cls, text: str) -> Catalog:
        """Parse and validate catalog TOML text::

        catalog = Catalog.from_toml('[[features]]\nid = "sso"\ntype = "boolean"\n')
        """
        if not isinstance(text, str):
            raise InvalidCatalog(f"catalog TOML must be text (str), got {type(text).__name__}")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidCatalog(f"catalog TOML is malformed: {exc}") from None
        return cls.from_toml_data(data)

    @classmethod
    def from_toml_data(cls, data: Mapping[str, Any]) -> Catalog:
        parsed = catalog_toml.catalog_from_data(data)
        return cls(parsed.features, parsed.products, allow_paid_default=parsed.allow_paid_default)

    def to_toml(self) -> str:
        return catalog_toml.catalog_to_toml(self.features, self.products)
