"""The catalog's records: features, products, their items, prices, tiers, trials and rollovers.

Frozen attrs value objects, each checking its own fields on construction; ``Catalog``
(``autumn_core.catalog``) checks how they fit together.
"""

from __future__ import annotations

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

#: Upper bounds that keep every date computation of a catalog inside the calendar: a count past
#: them is always a typo (``reset_count = 10**9``) and would break every later call.
MAX_RESET_COUNT = 1000
MAX_INTERVAL_COUNT = 100
MAX_CYCLE_MONTHS = 120
MAX_ROLLOVER_MONTHS = 120
#: The longest free trial per duration unit: ten years.
MAX_TRIAL: dict[str, int] = {"day": 3660, "week": 522, "month": 120, "year": 10}

#: Months per price interval, for the upgrade test (U4, U5).
INTERVAL_MONTHS: dict[str, Decimal] = {
    "one_off": Decimal(0),
    "week": Decimal("0.25"),
    "month": Decimal(1),
    "quarter": Decimal(3),
    "semi_annual": Decimal(6),
    "year": Decimal(12),
}


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)``, shortened so that a runaway value cannot flood an error message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 12]}...{text[-8:]}"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        if costs is not None and not isinstance(costs, Mapping):
            raise InvalidCatalog(
                f"feature {id!r}: costs must be a table of feature = cost, got {shown(costs)}"
            )
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
        if not isinstance(self.duration, str) or self.duration not in TRIAL_DURATIONS:
            raise InvalidCatalog(
                f"free trial duration must be one of {TRIAL_DURATIONS}, got {self.duration!r}"
            )
        longest = MAX_TRIAL[self.duration]
        if not is_int(self.length) or not 1 <= self.length <= longest:
            raise InvalidCatalog(
                f"free trial length must be an integer in 1..{longest} ({self.duration}s),"
                f" got {shown(self.length)}"
            )
        for flag in ("unique_fingerprint", "card_required"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidCatalog(
                    f"free trial {flag} must be true or false, got {shown(getattr(self, flag))}"
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


DEFAULT_RESET = "<interval>"


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
        reset: str | None = DEFAULT_RESET,
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
