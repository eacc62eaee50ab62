"""A stateful property test: the facade against a small independent reference model.

Hypothesis drives track (cap / reject / overflow, refunds), balances.set (remaining and usage),
balances.grant (with and without reset and expiry) and clock advances on one customer holding
a monthly main row, a usage-billed add-on row (max_purchase 30) and free seats. The model below
re-implements the rules from DOMAIN.md (O4-O10, R7-R9, D5, B2-B4, S2-S5) without calling the
engine. After every step the customer's Balance and every breakdown row must agree with it, and
no row may break its floor or ceiling unless balances.set or overflow put it there.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from autumn_core import (
    Autumn,
    Catalog,
    Feature,
    InsufficientBalance,
    Item,
    ManualClock,
    Product,
)
from autumn_memory import MemoryStore
from tests.conftest import StoreFactory

T0 = datetime(2025, 1, 31, 10, 0, tzinfo=UTC)
NEVER = datetime.max.replace(tzinfo=UTC)
INF = D("Infinity")
STEP = {"day": timedelta(days=1), "week": timedelta(weeks=1)}
NOMINAL = {"day": 1, "week": 7, "month": 30}  # days, for O5
MAX_PURCHASE = D(30)


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages"), Feature.allocated("users")],
        products=[
            Product("main", items=[Item.feature("messages", included=100, reset="month")]),
            Product(
                "over",
                add_on=True,
                items=[
                    Item.priced(
                        "messages", price=0, billing="usage", included=20, max_purchase=MAX_PURCHASE
                    )
                ],
            ),
            Product("seats", group="seats", items=[Item.feature("users", included=5)]),
        ],
    )


# -- the reference model ---------------------------------------------------------------------------
def plus_months(dt: datetime, n: int) -> datetime:
    years, month0 = divmod(dt.month - 1 + n, 12)
    year = dt.year + years
    last = calendar.monthrange(year, month0 + 1)[1]
    return dt.replace(year=year, month=month0 + 1, day=min(dt.day, last))


def boundary_after(anchor: datetime, reset: str, now: datetime) -> datetime:
    if reset in STEP:
        step = STEP[reset]
        return anchor + step * ((now - anchor) // step + 1)
    k = 1
    while plus_months(anchor, k) <= now:
        k += 1
    return plus_months(anchor, k)


@dataclass
class MRow:
    feature: str
    granted: D
    balance: D
    created: datetime
    reset: str | None = None
    anchor: datetime = T0
    next_reset: datetime | None = None
    expires: datetime | None = None
    add_on: bool = False
    usage_billed: bool = False
    allocated: bool = False
    #: balances.set or overflow may leave a row outside [floor, granted] until its next reset.
    unbounded: bool = False

    def key(self) -> tuple[object, ...]:
        return (
            0 if self.reset else 1,
            NOMINAL[self.reset] if self.reset else 0,
            self.expires or NEVER,
            self.add_on,
            self.usage_billed,
            self.created,
        )

    def floor(self, mode: str) -> D | None:
        if self.usage_billed:
            return -MAX_PURCHASE
        if self.allocated and mode != "reject":
            return -INF
        return None


class Model:
    def __init__(self) -> None:
        self.rows: list[MRow] = []  # creation order, as Balance.breakdown shows them

    def live(self, feature: str) -> list[MRow]:
        return [r for r in self.rows if r.feature == feature]

    def ordered(self, feature: str) -> list[MRow]:
        return sorted(self.live(feature), key=MRow.key)

    def catch_up(self, now: datetime) -> None:
        self.rows = [r for r in self.rows if r.expires is None or r.expires > now]
        for r in self.rows:
            if r.reset and r.next_reset is not None and r.next_reset <= now:
                r.balance, r.unbounded = r.granted, False
                r.next_reset = boundary_after(r.anchor, r.reset, now)

    def track(self, feature: str, value: D, mode: str) -> tuple[bool, D]:
        """Returns (raised, applied); on raise nothing changes."""
        rows = self.ordered(feature)
        new = {id(r): r.balance for r in rows}
        need = value
        if value < 0:
            need = -value
            for refill in (False, True):
                for r in rows:
                    room = (r.granted if refill else D(0)) - new[id(r)]
                    give = min(need, max(room, D(0)))
                    new[id(r)] += give
                    need -= give
            for r in rows:
                r.balance = new[id(r)]
            return False, value + need
        for r in rows:  # pass 1
            take = min(need, max(new[id(r)], D(0)))
            new[id(r)] -= take
            need -= take
        need_after_pass1 = need
        for i, r in enumerate(rows):  # pass 2
            if need == 0:
                break
            floor = (-INF if i == 0 else None) if mode == "overflow" else r.floor(mode)
            if floor is None:
                continue
            take = min(need, max(new[id(r)] - floor, D(0)))
            new[id(r)] -= take
            need -= take
        if need > 0 and (mode == "reject" or (feature == "users" and rows)):
            return True, D(0)
        if mode == "overflow" and need_after_pass1 > 0 and rows:
            rows[0].unbounded = True  # the first row took the rest, floors ignored (R8)
        for r in rows:
            r.balance = new[id(r)]
        return False, value - need

    def set_remaining(self, feature: str, target: D) -> None:
        rows = self.ordered(feature)
        delta = sum((r.balance for r in rows), D(0)) - target
        if delta > 0:
            for r in rows:
                take = min(delta, max(r.balance, D(0)))
                r.balance -= take
                delta -= take
            if delta > 0:
                rows[0].balance -= delta
                rows[0].unbounded = True
        elif delta < 0:
            give = -delta
            for r in rows:
                lift = min(give, max(-r.balance, D(0)))
                r.balance += lift
                give -= lift
            if give > 0:
                rows[0].balance += give
                rows[0].unbounded = True

    def granted(self, feature: str) -> D:
        return sum((r.granted for r in self.live(feature)), D(0))


# -- the machine ---------------------------------------------------------------------------------
amounts = st.decimals(min_value=-60, max_value=160, places=2, allow_nan=False)
features = st.sampled_from(["messages", "users"])


class BalancesMachine(RuleBasedStateMachine):
    #: Opens the store of one example (set by the test: one per store kind).
    new_store: StoreFactory = staticmethod(lambda slot=None: MemoryStore())  # type: ignore[assignment]

    @initialize()
    def start(self) -> None:
        self.clock = ManualClock(T0)
        self.billing = Autumn(catalog(), store=type(self).new_store(slot=0), clock=self.clock)
        self.model = Model()
        for product in ("main", "over", "seats"):
            self.billing.attach("c", product)
        month = boundary_after(T0, "month", T0)
        self.model.rows = [
            MRow("messages", D(100), D(100), T0, "month", T0, month),
            MRow("messages", D(20), D(20), T0, "month", T0, month, add_on=True, usage_billed=True),
            MRow("users", D(5), D(5), T0, allocated=True),
        ]

    def teardown(self) -> None:
        if hasattr(self, "billing"):
            self.billing.close()

    def now(self) -> datetime:
        return self.clock.now()

    @rule(feature=features, value=amounts, mode=st.sampled_from(["cap", "reject", "overflow"]))
    def track(self, feature: str, value: D, mode: str) -> None:
        self.model.catch_up(self.now())
        raised, applied = self.model.track(feature, value, mode)
        if raised:
            try:
                self.billing.track("c", feature, value=value, overage=mode)
            except InsufficientBalance:
                return
            raise AssertionError(f"track({feature}, {value}, {mode}) should have raised")
        result = self.billing.track("c", feature, value=value, overage=mode)
        assert result.applied == {feature: applied}, (result.applied, applied)

    @rule(feature=features, goal=amounts, by_usage=st.booleans())
    def set_balance(self, feature: str, goal: D, by_usage: bool) -> None:
        self.model.catch_up(self.now())
        if by_usage:  # B3: usage u is remaining = granted - u
            self.billing.balances.set("c", feature, usage=goal)
            self.model.set_remaining(feature, self.model.granted(feature) - goal)
        else:
            self.billing.balances.set("c", feature, remaining=goal)
            self.model.set_remaining(feature, goal)

    @rule(
        feature=features,
        amount=st.decimals(min_value="0.5", max_value=100, places=1),
        reset=st.sampled_from([None, "day", "week"]),
        expires_days=st.one_of(st.none(), st.integers(1, 40)),
    )
    def grant(self, feature: str, amount: D, reset: str | None, expires_days: int | None) -> None:
        self.clock.advance(seconds=1)  # distinct created_at: O10 ties would fall to random ids
        now = self.now()
        self.model.catch_up(now)
        if feature == "users":
            reset = None  # allocated features never reset
        expires = None if expires_days is None else now + timedelta(days=expires_days)
        self.billing.balances.grant("c", feature, amount, reset=reset, expires_at=expires)
        self.model.rows.append(
            MRow(
                feature,
                amount,
                amount,
                now,
                reset,
                now,
                boundary_after(now, reset, now) if reset else None,
                expires,
                add_on=True,
                allocated=feature == "users",
            )
        )

    @rule(seconds=st.integers(1, 40 * 86400))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    @invariant()
    def agrees_with_the_model(self) -> None:
        if not hasattr(self, "model"):
            return
        self.model.catch_up(self.now())
        features_ = self.billing.customers.get("c").features
        for feature in ("messages", "users"):
            b = features_[feature]
            rows = self.model.live(feature)
            assert [(r.granted, r.balance) for r in b.breakdown] == [
                (r.granted, r.balance) for r in rows
            ]
            granted = sum((r.granted for r in rows), D(0))
            total = sum((r.balance for r in rows), D(0))
            assert b.granted == granted
            assert b.usage == granted - total
            assert b.remaining == sum((max(r.balance, D(0)) for r in rows), D(0))
            assert b.overage == sum((max(-r.balance, D(0)) for r in rows), D(0))
            for shown, r in zip(b.breakdown, rows, strict=True):
                assert shown.next_reset_at == r.next_reset
                if r.unbounded:
                    continue
                assert shown.balance <= shown.granted
                floor = -MAX_PURCHASE if r.usage_billed else (-INF if r.allocated else D(0))
                assert shown.balance >= floor


#: Examples per store: the in-memory store explores widely, the durable stores replay the same
#: machine on real files and a real server within the CI budget.
EXAMPLES = {"memory": 400, "sqlite": 40, "postgres": 25}


def test_balances_follow_the_model(store_kind: str, new_store: StoreFactory) -> None:
    """Given any sequence of tracks, sets, grants and clock moves, on every store, then every
    balance the engine shows equals the reference model's, after every step."""

    class Machine(BalancesMachine):
        pass

    Machine.new_store = staticmethod(new_store)  # type: ignore[assignment]
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=EXAMPLES[store_kind],
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
