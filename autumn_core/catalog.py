"""The catalog: features, products, their items and prices, and the rules a catalog must keep.

Catalog types are frozen attrs value objects. ``Catalog`` validates on construction and raises
``InvalidCatalog`` naming the product and item at fault (docs/rules.md 2.2).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import attrs

from autumn_core.errors import InvalidCatalog, InvalidRequest
from autumn_core.values import to_decimal

INF = Decimal("Infinity")

FeatureType = Literal["boolean", "metered", "allocated", "credit_system"]
PriceInterval = Literal["one_off", "week", "month", "quarter", "semi_annual", "year"]
ResetInterval = Literal["minute", "hour", "day", "week", "month", "quarter", "semi_annual", "year"]

PRICE_INTERVALS: tuple[str, ...] = ("one_off", "week", "month", "quarter", "semi_annual", "year")
RESET_INTERVALS: tuple[str, ...] = (
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "quarter",
    "semi_annual",
    "year",
)
ON_INCREASE = ("prorate_immediately", "bill_immediately", "prorate_next_cycle", "bill_next_cycle")
ON_DECREASE = (
    "prorate_immediately",
    "prorate_next_cycle",
    "no_prorations",
    "none",
)
TRIAL_DURATIONS = ("day", "week", "month", "year")

#: Months per price interval, for the upgrade test (U4, U5).
INTERVAL_MONTHS: dict[str, Decimal] = {
    "one_off": Decimal(0),
    "week": Decimal("0.25"),
    "month": Decimal(1),
    "quarter": Decimal(3),
    "semi_annual": Decimal(6),
    "year": Decimal(12),
}


def _num(value: Any, what: str) -> Decimal:
    try:
        return to_decimal(value, what)
    except InvalidRequest as exc:
        raise InvalidCatalog(exc.message) from None


def _opt_num(value: Any) -> Decimal | None:
    return None if value is None else _num(value, "amount")


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _up_to(value: Any) -> Decimal:
    return INF if value == INF or value == "inf" else _num(value, "tier up_to")


def _amount(value: Any) -> Decimal:
    return _num(value, "amount")


@attrs.frozen
class Feature:
    id: str
    name: str | None = None
    type: str = "metered"
    event_names: tuple[str, ...] = attrs.field(default=(), converter=_names)
    costs: Mapping[str, Decimal] = attrs.field(factory=dict)

    @classmethod
    def boolean(cls, id: str, name: str | None = None) -> Feature:
        return cls(id, name, "boolean")

    @classmethod
    def metered(cls, id: str, name: str | None = None, event_names: Iterable[str] = ()) -> Feature:
        return cls(id, name, "metered", tuple(event_names))

    @classmethod
    def allocated(
        cls, id: str, name: str | None = None, event_names: Iterable[str] = ()
    ) -> Feature:
        return cls(id, name, "allocated", tuple(event_names))

    @classmethod
    def credit_system(
        cls, id: str, name: str | None = None, costs: Mapping[str, Any] | None = None
    ) -> Feature:
        parsed = {
            k: _num(v, f"cost of {k!r} in credit system {id!r}") for k, v in (costs or {}).items()
        }
        return cls(id, name, "credit_system", (), parsed)


@attrs.frozen
class Tier:
    up_to: Decimal = attrs.field(converter=_up_to)
    amount: Decimal = attrs.field(converter=_amount)
    flat_amount: Decimal = attrs.field(default=Decimal(0), converter=_amount)


@attrs.frozen
class FreeTrial:
    length: int
    duration: str = "day"
    unique_fingerprint: bool = False
    card_required: bool = True

    def __attrs_post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length <= 0:
            raise InvalidRequest(
                f"free trial length must be a positive integer, got {self.length!r}"
            )
        if self.duration not in TRIAL_DURATIONS:
            raise InvalidRequest(
                f"free trial duration must be one of {TRIAL_DURATIONS}, got {self.duration!r}"
            )


@attrs.frozen
class Rollover:
    max: Decimal | None = attrs.field(default=None, converter=_opt_num)
    max_percent: Decimal | None = attrs.field(default=None, converter=_opt_num)
    expires_after_months: int | None = None


@attrs.frozen
class Price:
    amount: Decimal = attrs.field(converter=_amount)
    interval: str = "month"
    interval_count: int = 1


_DEFAULT_RESET = "<interval>"


def _items(value: Iterable[Item]) -> tuple[Item, ...]:
    return tuple(value)


@attrs.frozen
class Item:
    """One line of a product: a grant (``Item.feature``) or a priced item (``Item.priced``)."""

    kind: str
    feature_id: str
    included: Decimal | None = None
    unlimited: bool = False
    reset: str | None = None
    reset_count: int = 1
    per_entity: str | None = None
    rollover: Rollover | None = None
    reset_usage_on_enable: bool | None = None
    price: Decimal | None = None
    tiers: tuple[Tier, ...] | None = None
    tier_mode: str = "graduated"
    billing: str | None = None
    billing_units: Decimal = Decimal(1)
    interval: str | None = None
    interval_count: int = 1
    max_purchase: Decimal | None = None
    on_increase: str = "prorate_immediately"
    on_decrease: str = "prorate_immediately"

    @classmethod
    def feature(
        cls,
        feature_id: str,
        included: Any = None,
        *,
        unlimited: bool = False,
        reset: str | None = None,
        reset_count: int = 1,
        per_entity: str | None = None,
        rollover: Rollover | None = None,
        reset_usage_on_enable: bool | None = None,
    ) -> Item:
        return cls(
            "feature",
            feature_id,
            included=None if included is None else _num(included, f"included of {feature_id!r}"),
            unlimited=unlimited,
            reset=reset,
            reset_count=reset_count,
            per_entity=per_entity,
            rollover=rollover,
            reset_usage_on_enable=reset_usage_on_enable,
        )

    @classmethod
    def priced(
        cls,
        feature_id: str,
        *,
        price: Any = None,
        tiers: Sequence[Tier] | None = None,
        tier_mode: str = "graduated",
        billing: str = "usage",
        billing_units: Any = 1,
        included: Any = 0,
        interval: str = "month",
        interval_count: int = 1,
        reset: str | None = _DEFAULT_RESET,
        reset_count: int = 1,
        max_purchase: Any = None,
        on_increase: str = "prorate_immediately",
        on_decrease: str = "prorate_immediately",
        rollover: Rollover | None = None,
        per_entity: str | None = None,
    ) -> Item:
        return cls(
            "priced",
            feature_id,
            included=_num(included, f"included of {feature_id!r}"),
            reset=reset,
            reset_count=reset_count,
            per_entity=per_entity,
            rollover=rollover,
            price=None if price is None else _num(price, f"price of {feature_id!r}"),
            tiers=None if tiers is None else tuple(tiers),
            tier_mode=tier_mode,
            billing=billing,
            billing_units=_num(billing_units, f"billing_units of {feature_id!r}"),
            interval=interval,
            interval_count=interval_count,
            max_purchase=None if max_purchase is None else _num(max_purchase, "max_purchase"),
            on_increase=on_increase,
            on_decrease=on_decrease,
        )

    @property
    def is_priced(self) -> bool:
        return self.kind == "priced"

    @property
    def is_prepaid(self) -> bool:
        return self.billing == "prepaid"

    @property
    def is_usage(self) -> bool:
        return self.billing == "usage"

    def amounts(self) -> list[Decimal]:
        if self.price is not None:
            return [self.price]
        return [a for t in self.tiers or () for a in (t.amount, t.flat_amount)]

    def first_amount(self) -> Decimal:
        if self.price is not None:
            return self.price
        return self.tiers[0].amount if self.tiers else Decimal(0)


@attrs.frozen
class Product:
    id: str
    name: str | None = None
    items: tuple[Item, ...] = attrs.field(default=(), converter=_items, kw_only=True)
    price: Price | None = attrs.field(default=None, kw_only=True)
    add_on: bool = attrs.field(default=False, kw_only=True)
    default: bool = attrs.field(default=False, kw_only=True)
    group: str = attrs.field(default="", kw_only=True)
    free_trial: FreeTrial | None = attrs.field(default=None, kw_only=True)

    @property
    def priced_items(self) -> list[Item]:
        return [i for i in self.items if i.is_priced]

    @property
    def is_free(self) -> bool:
        if self.price is not None and self.price.amount != 0:
            return False
        return all(a == 0 for i in self.priced_items for a in i.amounts())

    @property
    def is_one_off(self) -> bool:
        intervals = [i.interval for i in self.priced_items]
        if self.price is not None:
            intervals.append(self.price.interval)
        return bool(intervals) and all(iv == "one_off" for iv in intervals) and not self.is_free

    @property
    def is_recurring_paid(self) -> bool:
        return not self.is_free and not self.is_one_off

    @property
    def is_main(self) -> bool:
        return not self.add_on and not self.is_one_off

    @property
    def card_less_trial(self) -> bool:
        return self.free_trial is not None and not self.free_trial.card_required

    def billing_interval(self) -> tuple[str, int] | None:
        """The longest recurring interval of the product's prices: its billing cycle."""
        best: tuple[str, int] | None = None
        best_months = Decimal(-1)
        candidates: list[tuple[str, int]] = []
        if self.price is not None and self.price.interval != "one_off":
            candidates.append((self.price.interval, self.price.interval_count))
        for item in self.priced_items:
            if item.interval and item.interval != "one_off":
                candidates.append((item.interval, item.interval_count))
        for iv, count in candidates:
            months = INTERVAL_MONTHS[iv] * count
            if months > best_months:
                best, best_months = (iv, count), months
        return best


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
        self.features: tuple[Feature, ...] = tuple(features)
        raw_products = tuple(products)
        self._features: dict[str, Feature] = {}
        for f in self.features:
            if not isinstance(f, Feature):
                raise InvalidCatalog(f"features must be Feature objects, got {f!r}")
            if f.id in self._features:
                raise InvalidCatalog(f"feature {f.id!r} is defined twice")
            if f.type not in ("boolean", "metered", "allocated", "credit_system"):
                raise InvalidCatalog(f"feature {f.id!r} has unknown type {f.type!r}")
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

        if not isinstance(p.id, str) or not p.id:
            raise InvalidCatalog(f"product id must be a non-empty string, got {p.id!r}")
        if p.price is not None:
            if p.price.interval not in PRICE_INTERVALS:
                raise bad(f"price interval {p.price.interval!r} is not one of {PRICE_INTERVALS}")
            if p.price.amount < 0:
                raise bad(f"negative price amount {p.price.amount}")
            if p.price.interval_count < 1:
                raise bad("price interval_count must be >= 1")
        items: list[Item] = []
        for item in p.items:
            if not isinstance(item, Item):
                raise bad(f"items must be Item objects, got {item!r}")
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
        if item.reset_count < 1:
            raise bad("reset_count must be >= 1", item)
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
            if reset == _DEFAULT_RESET:
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
        if reset is not None and reset not in RESET_INTERVALS:
            raise bad(f"reset {reset!r} is not one of {RESET_INTERVALS}", item)
        if ftype == "allocated" and reset is not None:
            raise bad("an allocated item cannot reset", item)
        if item.rollover is not None:
            if ftype not in ("metered", "credit_system") or reset is None:
                raise bad("a rollover needs a metered item with a reset", item)
            if item.rollover.max is not None and item.rollover.max_percent is not None:
                raise bad("a rollover takes max or max_percent, not both", item)
        reset_on_enable = item.reset_usage_on_enable
        if reset_on_enable is None or item.is_priced:
            reset_on_enable = ftype != "allocated"
        return attrs.evolve(item, reset=reset, reset_usage_on_enable=reset_on_enable)

    # -- TOML ------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Catalog:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidCatalog(f"cannot read catalog {os.fspath(path)!r}: {exc}") from None
        return cls.from_toml_data(data)

    @classmethod
    def from_toml(cls, text: str) -> Catalog:
        try:
            return cls.from_toml_data(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise InvalidCatalog(f"catalog TOML is malformed: {exc}") from None

    @classmethod
    def from_toml_data(cls, data: Mapping[str, Any]) -> Catalog:
        from autumn_core.catalog_toml import catalog_from_data

        return catalog_from_data(cls, data)

    def to_toml(self) -> str:
        from autumn_core.catalog_toml import catalog_to_toml

        return catalog_to_toml(self)
