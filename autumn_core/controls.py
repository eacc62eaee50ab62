"""Billing controls: the runtime policy set on a customer or an entity (docs/rules.md BC1).

Autumn's ``billing_controls`` record, field for field: ``overage_allowed``, ``spend_limits``,
``usage_limits``, ``usage_alerts`` and ``auto_topups`` (customers only). Controls never change
what a plan grants; they change how usage is allowed, capped, alerted or topped up.

``parse_controls`` is the one boundary check: it takes a ``BillingControls`` or Autumn's JSON
shape (a dict of lists of dicts, snake_case) and returns a checked record, or raises
``InvalidRequest`` naming the bad value. ``merge_controls`` applies an update as Autumn does: a
key that is given replaces that whole list, a key that is absent keeps the current one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from autumn_core.errors import InvalidRequest
from autumn_core.values import check_id, check_optional_str, to_decimal

ZERO = Decimal(0)
HUNDRED = Decimal(100)

#: Windows of a usage limit: Autumn's day/week/month/year, and hour.
USAGE_LIMIT_INTERVALS = ("hour", "day", "week", "month", "year")
#: ``billing_cycle`` phases a window to the customer's reset anchor; ``utc`` to the calendar.
USAGE_LIMIT_ANCHORS = ("billing_cycle", "utc")
ALERT_THRESHOLD_TYPES = ("usage", "usage_percentage", "remaining", "remaining_percentage")
SPEND_LIMIT_TYPES = ("absolute", "usage_percentage")
PURCHASE_LIMIT_INTERVALS = ("hour", "day", "week", "month")
KEYS = ("auto_topups", "spend_limits", "usage_limits", "usage_alerts", "overage_allowed")


@attrs.frozen
class OverageAllowed:
    """Allow (or forbid) usage beyond the granted balance, overriding the plan's pricing."""

    feature_id: str
    enabled: bool = False


@attrs.frozen
class SpendLimit:
    """Caps overage of a usage-billed feature, in feature units.

    ``limit_type="usage_percentage"`` reads ``overage_limit`` as a percent of the granted
    (included) amount. A disabled entry, or one without ``overage_limit``, caps nothing.
    """

    feature_id: str | None = None
    enabled: bool = False
    overage_limit: Decimal | None = None
    limit_type: str = "absolute"


@attrs.frozen
class UsageLimit:
    """At most ``limit`` units of a feature per ``interval`` window."""

    feature_id: str
    limit: Decimal
    interval: str
    enabled: bool = True
    anchor: str = "billing_cycle"


@attrs.frozen
class UsageAlert:
    """Signals once when usage crosses a threshold ; never blocks usage."""

    feature_id: str
    threshold: Decimal
    threshold_type: str
    enabled: bool = True
    name: str | None = None


@attrs.frozen
class PurchaseLimit:
    """At most ``limit`` auto top-ups per ``interval_count`` times ``interval``."""

    interval: str
    limit: int
    interval_count: int = 1


@attrs.frozen
class AutoTopup:
    """Buy ``quantity`` of a prepaid feature when its balance falls below ``threshold``."""

    feature_id: str
    threshold: Decimal
    quantity: Decimal
    enabled: bool = False
    purchase_limit: PurchaseLimit | None = None
    invoice_mode: bool = False


@attrs.frozen
class BillingControls:
    """The billing controls of one customer or one entity (entities have no auto top-ups)."""

    overage_allowed: tuple[OverageAllowed, ...] = ()
    spend_limits: tuple[SpendLimit, ...] = ()
    usage_limits: tuple[UsageLimit, ...] = ()
    usage_alerts: tuple[UsageAlert, ...] = ()
    auto_topups: tuple[AutoTopup, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.overage_allowed
            or self.spend_limits
            or self.usage_limits
            or self.usage_alerts
            or self.auto_topups
        )

    def overage_for(self, feature_id: str) -> OverageAllowed | None:
        return next((o for o in self.overage_allowed if o.feature_id == feature_id), None)

    def spend_limit_for(self, feature_id: str) -> SpendLimit | None:
        return next((s for s in self.spend_limits if s.feature_id == feature_id), None)

    def usage_limit_for(self, feature_id: str) -> UsageLimit | None:
        return next((u for u in self.usage_limits if u.feature_id == feature_id), None)

    def alerts_for(self, feature_id: str) -> tuple[UsageAlert, ...]:
        return tuple(a for a in self.usage_alerts if a.feature_id == feature_id)


NO_CONTROLS = BillingControls()


# -- the boundary ------------------------------------------------------------------------------
def parse_controls(value: Any, *, entity: bool = False) -> BillingControls:
    """A checked ``BillingControls`` from a record or Autumn's JSON shape (BC1).

    Every list is checked entry by entry; one entry per feature for each control;
    ``entity=True`` refuses auto top-ups (customer-level only).
    """
    if value is None:
        return NO_CONTROLS
    where = "entity billing_controls" if entity else "billing_controls"
    if isinstance(value, BillingControls):
        data: Mapping[str, Any] = {k: list(getattr(value, k)) for k in KEYS}
    elif isinstance(value, Mapping):
        data = value
    else:
        raise InvalidRequest(f"{where} must be a BillingControls or a dict, got {value!r:.80}")
    unknown = sorted(str(k) for k in data if k not in KEYS)
    if unknown:
        raise InvalidRequest(f"{where} takes {sorted(KEYS)}, not {unknown}")
    if entity and data.get("auto_topups"):
        raise InvalidRequest("auto_topups are customer-level only: an entity cannot have them")
    out = BillingControls(
        overage_allowed=_list(data, "overage_allowed", _overage, where),
        spend_limits=_list(data, "spend_limits", _spend_limit, where),
        usage_limits=_list(data, "usage_limits", _usage_limit, where),
        usage_alerts=_list(data, "usage_alerts", _usage_alert, where),
        auto_topups=_list(data, "auto_topups", _auto_topup, where),
    )
    _unique(out.overage_allowed, lambda o: o.feature_id, "overage_allowed", where)
    _unique(out.spend_limits, lambda s: s.feature_id, "spend_limits", where)
    _unique(out.usage_limits, lambda u: u.feature_id, "usage_limits", where)
    _unique(out.auto_topups, lambda t: t.feature_id, "auto_topups", where)
    return NO_CONTROLS if out.empty else out


def parse_patch(value: Any, *, entity: bool = False) -> dict[str, Any]:
    """The keys an update sets: a dict sets the keys it has, a record (or None) sets all."""
    if isinstance(value, Mapping):
        checked = parse_controls(value, entity=entity)
        return {k: getattr(checked, k) for k in KEYS if k in value}
    checked = parse_controls(value, entity=entity)
    return {k: getattr(checked, k) for k in KEYS}


def merge_controls(current: BillingControls, patch: Mapping[str, Any]) -> BillingControls:
    """``current`` with the lists of ``patch`` (from ``parse_patch``) put in their place."""
    if not patch:
        return current
    merged = attrs.evolve(current, **patch)
    return NO_CONTROLS if merged.empty else merged


def controls_dict(controls: BillingControls) -> dict[str, Any]:
    """Autumn's JSON shape of the controls: the lists that are set, numbers as Decimals."""
    out: dict[str, Any] = {}
    for key in KEYS:
        entries = getattr(controls, key)
        if entries:
            out[key] = [_entry_dict(e) for e in entries]
    return out


def _entry_dict(entry: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in attrs.fields(type(entry)):
        value = getattr(entry, field.name)
        if value is None:
            continue
        out[field.name] = _entry_dict(value) if attrs.has(type(value)) else value
    return out


# -- entries -----------------------------------------------------------------------------------
def _list(data: Mapping[str, Any], key: str, parse: Any, where: str) -> tuple[Any, ...]:
    raw = data.get(key)
    if raw is None:
        return ()
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence):
        raise InvalidRequest(f"{where}.{key} must be a list, got {raw!r:.80}")
    out = []
    for i, item in enumerate(raw):
        what = f"{where}.{key}[{i}]"
        if attrs.has(type(item)):
            item = {f.name: getattr(item, f.name) for f in attrs.fields(type(item))}
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"{what} must be a dict, got {item!r:.80}")
        out.append(parse(_Fields(item, what)))
    return tuple(out)


class _Fields:
    """One entry's fields, each read once and checked, unknown keys refused at the end."""

    def __init__(self, data: Mapping[str, Any], what: str) -> None:
        self.data = data
        self.what = what
        self.seen: set[str] = set()

    def raw(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def feature(self, *, required: bool = True) -> str | None:
        value = self.raw("feature_id")
        if value is None and not required:
            return None
        return check_id(value, f"{self.what}.feature_id")

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidRequest(f"{self.what}.{key} must be true or false, got {value!r}")
        return value

    def optional_number(self, key: str) -> Decimal | None:
        return None if self.data.get(key) is None else self.number(key)

    def number(self, key: str, *, minimum: Decimal = ZERO) -> Decimal:
        value = self.raw(key)
        amount = to_decimal(value, f"{self.what}.{key}")
        if amount < minimum:
            raise InvalidRequest(f"{self.what}.{key} must be at least {minimum}, got {value!r}")
        return amount

    def integer(self, key: str, *, default: int | None = None) -> int:
        value = self.raw(key)
        if value is None and default is not None:
            return default
        amount = to_decimal(value, f"{self.what}.{key}")
        if amount != amount.to_integral_value() or amount < 1:
            raise InvalidRequest(f"{self.what}.{key} must be a positive integer, got {value!r}")
        return int(amount)

    def choice(self, key: str, options: tuple[str, ...], default: str | None = None) -> str:
        value = self.raw(key)
        if value is None and default is not None:
            return default
        if value not in options:
            raise InvalidRequest(f"{self.what}.{key} must be one of {list(options)}, got {value!r}")
        return str(value)

    def done(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self.seen)
        if unknown:
            raise InvalidRequest(f"{self.what} has unknown keys {unknown}")


def _overage(f: _Fields) -> OverageAllowed:
    out = OverageAllowed(str(f.feature()), f.flag("enabled", False))
    f.done()
    return out


def _spend_limit(f: _Fields) -> SpendLimit:
    feature_id = f.feature(required=False)
    limit = f.optional_number("overage_limit")
    limit_type = f.choice("limit_type", SPEND_LIMIT_TYPES, "absolute")
    enabled = f.flag("enabled", False)
    f.done()
    if feature_id is None and limit is not None:
        raise InvalidRequest(f"{f.what}.feature_id is required when overage_limit is given")
    return SpendLimit(feature_id, enabled, limit, limit_type)


def _usage_limit(f: _Fields) -> UsageLimit:
    out = UsageLimit(
        str(f.feature()),
        f.number("limit"),
        f.choice("interval", USAGE_LIMIT_INTERVALS),
        f.flag("enabled", True),
        f.choice("anchor", USAGE_LIMIT_ANCHORS, "billing_cycle"),
    )
    f.done()
    return out


def _usage_alert(f: _Fields) -> UsageAlert:
    out = UsageAlert(
        str(f.feature()),
        f.number("threshold"),
        f.choice("threshold_type", ALERT_THRESHOLD_TYPES),
        f.flag("enabled", True),
        check_optional_str(f.raw("name"), f"{f.what}.name"),
    )
    f.done()
    if out.threshold_type == "remaining_percentage" and out.threshold > HUNDRED:
        raise InvalidRequest(
            f"{f.what}.threshold must be between 0 and 100 for remaining_percentage, "
            f"got {out.threshold}"
        )
    return out


def _auto_topup(f: _Fields) -> AutoTopup:
    feature_id = str(f.feature())
    threshold = f.number("threshold")
    quantity = f.number("quantity", minimum=Decimal(1))
    enabled = f.flag("enabled", False)
    raw_limit = f.raw("purchase_limit")
    limit: PurchaseLimit | None = None
    if raw_limit is not None:
        if attrs.has(type(raw_limit)):
            raw_limit = attrs.asdict(raw_limit)
        if not isinstance(raw_limit, Mapping):
            raise InvalidRequest(f"{f.what}.purchase_limit must be a dict, got {raw_limit!r:.80}")
        pf = _Fields(raw_limit, f"{f.what}.purchase_limit")
        limit = PurchaseLimit(
            pf.choice("interval", PURCHASE_LIMIT_INTERVALS),
            pf.integer("limit"),
            pf.integer("interval_count", default=1),
        )
        pf.done()
    invoice_mode = f.flag("invoice_mode", False)
    f.done()
    return AutoTopup(feature_id, threshold, quantity, enabled, limit, invoice_mode)


def _unique(entries: tuple[Any, ...], key: Any, name: str, where: str) -> None:
    seen: set[Any] = set()
    for entry in entries:
        k = key(entry)
        if k is None:
            continue
        if k in seen:
            raise InvalidRequest(f"{where}.{name} has more than one entry for {k!r}")
        seen.add(k)


__all__ = [
    "KEYS",
    "NO_CONTROLS",
    "AutoTopup",
    "BillingControls",
    "OverageAllowed",
    "PurchaseLimit",
    "SpendLimit",
    "UsageAlert",
    "UsageLimit",
    "controls_dict",
    "merge_controls",
    "parse_controls",
    "parse_patch",
]
