"""Periods (S1-S3, D6), free resets (S5, S6, E22), rollovers (RO1-RO3) and row making (2.5, Q1)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from autumn_core.catalog import Catalog, Feature, Item, Price, Product, Rollover
from autumn_core.model import ProductState, RowState
from autumn_core.rules.balance_view import balance_view
from autumn_core.rules.deduction import deduct
from autumn_core.rules.periods import add_months, next_boundary, previous_boundary
from autumn_core.rules.rows import cap_rollovers, due_for_free_reset, product_rows, reset_row
from tests.engine.helpers import T0, D, ordered, roll, row

_ids = itertools.count(1)


def new_id() -> str:
    return f"id_{next(_ids)}"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- periods (S2, D6) ----------------------------------------------------------------------------
def test_s2_month_end_clamping_from_the_anchor_never_drifts() -> None:
    """S2/D6: anchor Jan 31 10:00 -> Feb 28 (29) -> Mar 31; never Mar 28."""
    anchor = utc(2025, 1, 31, 10)
    assert next_boundary(anchor, "month", 1, utc(2025, 2, 1)) == utc(2025, 2, 28, 10)
    assert next_boundary(anchor, "month", 1, utc(2025, 2, 28, 10)) == utc(2025, 3, 31, 10)
    assert next_boundary(anchor, "month", 1, utc(2025, 4, 1)) == utc(2025, 4, 30, 10)
    leap = utc(2024, 1, 31, 10)
    assert next_boundary(leap, "month", 1, utc(2024, 2, 2)) == utc(2024, 2, 29, 10)
    assert next_boundary(leap, "month", 1, utc(2024, 2, 29, 10)) == utc(2024, 3, 31, 10)
    assert add_months(utc(2024, 2, 29), 12) == utc(2025, 2, 28)


def test_s2_boundaries_are_strictly_after_now() -> None:
    """S2: the first anchor + k x interval strictly after now (a boundary at now is passed)."""
    anchor = utc(2025, 3, 10, 9)
    assert next_boundary(anchor, "month", 1, anchor) == utc(2025, 4, 10, 9)
    assert next_boundary(anchor, "day", 1, utc(2025, 3, 11, 9)) == utc(2025, 3, 12, 9)
    assert next_boundary(anchor, "hour", 1, utc(2025, 3, 10, 9, 59)) == utc(2025, 3, 10, 10)


@pytest.mark.parametrize(
    ("interval", "count", "now", "expected"),
    [
        ("minute", 1, utc(2025, 1, 31, 10, 0, 30), utc(2025, 1, 31, 10, 1)),
        ("minute", 15, utc(2025, 1, 31, 10, 20), utc(2025, 1, 31, 10, 30)),
        ("hour", 6, utc(2025, 1, 31, 17), utc(2025, 1, 31, 22)),
        ("day", 3, utc(2025, 2, 2), utc(2025, 2, 3, 10)),
        ("week", 2, utc(2025, 2, 20), utc(2025, 2, 28, 10)),
        ("month", 2, utc(2025, 3, 31, 10), utc(2025, 5, 31, 10)),
        ("quarter", 1, utc(2025, 2, 1), utc(2025, 4, 30, 10)),
        ("semi_annual", 1, utc(2025, 8, 1), utc(2026, 1, 31, 10)),
        ("year", 1, utc(2028, 6, 1), utc(2029, 1, 31, 10)),
    ],
)
def test_s2_every_interval_with_counts(
    interval: str, count: int, now: datetime, expected: datetime
) -> None:
    """S2: minute ... year, with reset_count, counted from the anchor Jan 31 2025 10:00."""
    assert next_boundary(T0, interval, count, now) == expected


@pytest.mark.parametrize(
    ("anchor", "interval", "count", "now", "expected"),
    [
        # within the first period: the first boundary, not the second
        (utc(2025, 1, 10), "month", 1, utc(2025, 1, 20), utc(2025, 2, 10)),
        # across a year end: December to January is one month, not thirteen or twenty-three
        (utc(2024, 12, 31, 10), "month", 1, utc(2025, 1, 15), utc(2025, 1, 31, 10)),
        (utc(2024, 11, 30), "quarter", 1, utc(2025, 2, 27), utc(2025, 2, 28)),
        # the boundary itself starts the next period (strictly after now)
        (utc(2024, 12, 31, 10), "month", 2, utc(2025, 2, 28, 10), utc(2025, 4, 30, 10)),
        # many years later, the day clamped in every month on the way
        (utc(2023, 1, 31), "month", 1, utc(2031, 2, 28), utc(2031, 3, 31)),
    ],
)
def test_s2_the_next_boundary_from_the_calendar_months_elapsed(
    anchor: datetime, interval: str, count: int, now: datetime, expected: datetime
) -> None:
    """Given an anchor and a time after it, when the next boundary is asked for, then it is the
    first anchor + k steps strictly after now, whatever the years and month ends between."""
    assert next_boundary(anchor, interval, count, now) == expected


def test_s2_far_future_monthly_matches_step_by_step() -> None:
    """D6: the estimate-and-correct search agrees with stepping one month at a time."""
    anchor = utc(2024, 1, 31, 23, 59)
    now = anchor
    for _ in range(40):
        nxt = next_boundary(anchor, "month", 1, now)
        k = 1
        while add_months(anchor, k) <= now:
            k += 1
        assert nxt == add_months(anchor, k)
        now = nxt + timedelta(days=11)


@pytest.mark.parametrize(
    ("anchor", "interval", "count", "now", "expected"),
    [
        # before the first boundary: the period starts at the anchor
        (utc(2025, 1, 31), "month", 1, utc(2025, 2, 27), utc(2025, 1, 31)),
        # on a boundary: that boundary (month-end clamped, not drifted to the 28th)
        (utc(2025, 1, 31), "month", 1, utc(2025, 2, 28), utc(2025, 2, 28)),
        (utc(2025, 1, 31), "month", 1, utc(2025, 4, 15), utc(2025, 3, 31)),
        # across a year end, quarterly
        (utc(2024, 11, 30), "quarter", 1, utc(2025, 3, 1), utc(2025, 2, 28)),
        # fixed steps: two weeks
        (utc(2025, 1, 1), "week", 2, utc(2025, 1, 20), utc(2025, 1, 15)),
        (utc(2025, 1, 1), "day", 1, utc(2025, 1, 1), utc(2025, 1, 1)),
    ],
)
def test_s2_the_current_period_starts_at_the_last_boundary(
    anchor: datetime, interval: str, count: int, now: datetime, expected: datetime
) -> None:
    """Given an anchor, when the start of the period holding ``now`` is asked for (a usage
    window of billing controls), then it is the last anchor + k steps at or before now."""
    assert previous_boundary(anchor, interval, count, now) == expected


# -- free resets (S3, S5, S6, E22) ---------------------------------------------------------------
def test_s5_reset_refills_to_the_starting_balance_and_moves_the_date() -> None:
    """S5/E19: 100 monthly with 50 used, reset -> 100, next date from the anchor."""
    r = row(granted=100, balance=50, reset="month")
    now = utc(2025, 2, 28, 10)
    assert due_for_free_reset(r, now) and not due_for_free_reset(r, now - timedelta(seconds=1))
    new = reset_row(r, now, new_id=new_id)
    assert (new.balance, new.granted, new.next_reset_at) == (D(100), D(100), utc(2025, 3, 31, 10))


def test_s3_missed_periods_collapse_into_one_reset_and_one_rollover() -> None:
    """S3/RO1: three missed months -> one reset, one rollover, next date after now."""
    r = row(granted=100, balance=40, reset="month", rollover=Rollover())
    now = utc(2025, 5, 15)
    new = reset_row(r, now, new_id=new_id)
    assert new.balance == D(100)
    assert [(x.amount, x.balance) for x in new.rollovers] == [(D(40), D(40))]
    assert new.next_reset_at == utc(2025, 5, 31, 10)


def test_e22_persist_free_overage_subtracts_the_overage() -> None:
    """E22/S5(2): balance -75 -> the reset gives 25; from -100 -> 0; without the option -> 100."""
    r = row(granted=100, balance=-75, reset="month")
    later = utc(2025, 3, 1)
    assert reset_row(r, later, new_id=new_id, persist_overage=True).balance == D(25)
    r100 = row(granted=100, balance=-100, reset="month")
    zero = reset_row(r100, later, new_id=new_id, persist_overage=True)
    assert zero.balance == D(0)
    assert balance_view("messages", "metered", [zero], later).usage == D(100)
    assert reset_row(r100, later, new_id=new_id).balance == D(100)
    # Allowance 200, balance -30 -> 170 (S5 example).
    assert reset_row(
        row(granted=200, balance=-30, reset="day"), later, new_id=new_id, persist_overage=True
    ).balance == D(170)


def test_s6_rows_that_never_reset_lazily() -> None:
    """S6: allocated, unlimited, non-resetting and renew-with-product rows are not free-reset."""
    later = utc(2026, 1, 1)
    assert not due_for_free_reset(row(granted=5), later)
    assert not due_for_free_reset(row(unlimited=True, reset="day"), later)
    alloc = row("users", granted=5, allocated=True)
    assert not due_for_free_reset(alloc, later)
    renews = RowState(**{**_fields(row(granted=5, reset="month")), "renews_with_product": True})
    assert not due_for_free_reset(renews, later)


def _fields(r: RowState) -> dict:  # type: ignore[type-arg]
    return {a.name: getattr(r, a.name) for a in attrs.fields(RowState)}


# -- rollovers (RO1-RO3) ------------------------------------------------------------------------
def test_ro1_rollover_of_the_leftover_expires_months_after_the_old_boundary() -> None:
    """RO1: the leftover becomes a rollover expiring expires_after_months after next_reset_at."""
    r = row(granted=100, balance=30, reset="month", rollover=Rollover(expires_after_months=1))
    new = reset_row(r, utc(2025, 2, 28, 10), new_id=new_id)
    (ro,) = new.rollovers
    assert (ro.amount, ro.balance, ro.expires_at) == (D(30), D(30), utc(2025, 3, 28, 10))


def test_ro1_nothing_rolls_over_from_zero_or_negative() -> None:
    r = row(granted=100, balance=0, reset="month", rollover=Rollover())
    assert reset_row(r, utc(2025, 3, 1), new_id=new_id).rollovers == ()


def test_ro2_max_caps_by_trimming_the_oldest_first() -> None:
    """RO2/RO6 example: [300 older, 200 newer] under max 350 -> [150, 200]."""
    older = roll(300, expires_at=utc(2025, 3, 1))
    newer = roll(200, expires_at=utc(2025, 4, 1))
    r = row(
        granted=10, balance=0, reset="month", rollover=Rollover(max=350), rollovers=[older, newer]
    )
    new = reset_row(r, utc(2025, 2, 28, 10), new_id=new_id)
    assert [(x.amount, x.balance) for x in new.rollovers] == [(D(150), D(150)), (D(200), D(200))]


def test_ro2_max_percent_cap_and_zero_rollovers_are_deleted() -> None:
    """RO2: max_percent=25 on a starting balance of 600 -> cap 150; an emptied rollover is gone."""
    old = roll(100, expires_at=None)
    r = row(
        granted=600, balance=120, reset="month", rollover=Rollover(max_percent=25), rollovers=[old]
    )
    new = reset_row(r, utc(2025, 2, 28, 10), new_id=new_id)
    # 100 (never expires) + 120 (never expires, newer) = 220 > 150: trim 70 from the older.
    assert [(x.amount, x.balance) for x in new.rollovers] == [(D(30), D(30)), (D(120), D(120))]
    tight = row(
        granted=600,
        balance=150,
        reset="month",
        rollover=Rollover(max_percent=25),
        rollovers=[roll(40)],
    )
    capped = reset_row(tight, utc(2025, 2, 28, 10), new_id=new_id)
    assert [x.balance for x in capped.rollovers] == [D(150)]


def test_ro2_max_percent_floors_fractions() -> None:
    """RO2: floor(starting x max_percent / 100): 99 x 10% -> 9."""
    r = row(granted=99, balance=99, reset="month", rollover=Rollover(max_percent=10))
    assert [x.balance for x in reset_row(r, utc(2025, 3, 1), new_id=new_id).rollovers] == [D(9)]


def test_ro3_expired_rollovers_are_dropped_at_reset() -> None:
    """RO3: a rollover with expires_at <= now is removed."""
    r = row(
        granted=10,
        balance=0,
        reset="month",
        rollover=Rollover(),
        rollovers=[roll(5, expires_at=utc(2025, 2, 28, 10))],
    )
    assert reset_row(r, utc(2025, 2, 28, 10), new_id=new_id).rollovers == ()


def test_e20_usage_billed_rollover_at_renewal_engine_level() -> None:
    """E20: usage-billed 400, Rollover(max=500, 1 month): track 150, renew -> 650, [250]."""
    r = row(
        granted=400,
        reset="month",
        billing="usage",
        rollover=Rollover(max=500, expires_after_months=1),
    )
    used = deduct(ordered([r]), D(150), "cap", T0).changed[r.id]
    renewed = reset_row(used, utc(2025, 2, 28, 10), new_id=new_id)
    v = balance_view("messages", "metered", [renewed], utc(2025, 2, 28, 10))
    assert v.remaining == D(650)
    assert [x.amount for x in v.rollovers] == [D(250)]


def test_e21_prepaid_uncapped_rollover_engine_level() -> None:
    """E21: prepaid 300 included + 1 pack of 300, uncapped Rollover(): track 350, renew -> 850."""
    r = row(granted=600, reset="month", billing="prepaid", rollover=Rollover())
    used = deduct(ordered([r]), D(350), "cap", T0).changed[r.id]
    renewed = reset_row(used, utc(2025, 2, 28, 10), new_id=new_id)
    v = balance_view("messages", "metered", [renewed], utc(2025, 2, 28, 10))
    assert (v.remaining, v.granted) == (D(850), D(850))
    # Rollovers are spent first at the next track (R6).
    spent = deduct(ordered([renewed]), D(300), "cap", utc(2025, 3, 1)).changed[r.id]
    assert (spent.rollovers[0].balance, spent.balance) == (D(0), D(550))


def test_reset_row_starting_override_for_pending_quantities() -> None:
    """S7(3): a renewal may refill to a new starting balance (pending quantities)."""
    r = row(granted=400, balance=-5, reset="month", billing="prepaid")
    new = reset_row(r, utc(2025, 3, 1), new_id=new_id, starting=D(200))
    assert (new.granted, new.balance) == (D(200), D(200))


# -- making rows (2.5, Q1, EN3) -------------------------------------------------------------------
def _catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages"), Feature.allocated("users"), Feature.boolean("sso")],
        products=[
            Product(
                "p",
                items=[
                    Item.feature("sso"),
                    Item.feature("messages", included=100, reset="month"),
                    Item.priced(
                        "messages",
                        price=0,
                        billing="prepaid",
                        billing_units=50,
                        included=50,
                        interval="month",
                    ),
                    Item.feature("messages", included=40, reset="day", per_entity="users"),
                    Item.feature("messages", unlimited=True),
                ],
            ),
        ],
    )


def test_product_rows_starting_balances_prepaid_packs_and_per_entity() -> None:
    """2.5/Q1/EN3: one row per item, prepaid = included + packs x units, one row per entity."""
    from autumn_core.model import EntityState

    cat = _catalog()
    product = cat.product("p")
    assert product is not None
    cp = ProductState("cp_9", "p", 1, "active", T0, quantities={"messages": D(240)})
    ents = [EntityState("a", "users", T0), EntityState("b", "users", T0)]
    rows = product_rows(
        product,
        cp,
        {"messages": "metered", "users": "allocated", "sso": "boolean"},
        ents,
        T0,
        reset_anchor=T0,
        new_id=new_id,
    )
    assert [(r.granted, r.entity_id, r.reset, r.unlimited) for r in rows] == [
        (D(100), None, "month", False),
        (D(250), None, "month", False),  # 50 + ceil(190 / 50) = 4 packs of 50
        (D(40), "a", "day", False),
        (D(40), "b", "day", False),
        (D(0), None, None, True),
    ]
    assert rows[1].billing == "prepaid" and not rows[1].renews_with_product  # a free product
    assert rows[0].next_reset_at == utc(2025, 2, 28, 10)
    only_c = product_rows(
        product,
        cp,
        {"messages": "metered", "users": "allocated", "sso": "boolean"},
        [EntityState("c", "users", T0)],
        T0,
        reset_anchor=T0,
        new_id=new_id,
        only_entity="c",
    )
    assert [(r.entity_id, r.granted) for r in only_c] == [("c", D(40))]


def test_product_rows_carry_every_field_of_their_items() -> None:
    """2.5, S6, O8: given a paid add-on attached to entity "a" at T0 with a usage-billed item
    (capped at 20, reset with its monthly price), a prepaid item (a purchase limit of 40 that
    is not a floor) and a free item reset every 3 days, then each row records its item, the
    add-on rank, its own reset, and only the usage row keeps the cap and renews with the
    product."""
    from autumn_core.model import EntityState

    extra = Product(
        "extra",
        add_on=True,
        price=Price(10),
        items=[
            Item.priced("messages", price="0.5", included=5, max_purchase=20),
            Item.priced("credits", price=2, billing="prepaid", billing_units=10, max_purchase=40),
            Item.feature("words", included=7, reset="day", reset_count=3),
        ],
    )
    features = [Feature.metered(f) for f in ("messages", "credits", "words")]
    product = Catalog(features=features, products=[extra]).product("extra")
    assert product is not None
    cp = ProductState(
        "cp_7", "extra", 1, "active", T0, entity_id="a", add_on=True, quantities={"credits": D(25)}
    )
    ids = iter(["r1", "r2", "r3"])
    rows = product_rows(
        product,
        cp,
        {"messages": "metered", "credits": "metered", "words": "metered"},
        [EntityState("a", "users", T0)],
        T0 + timedelta(hours=1),
        reset_anchor=T0,
        new_id=lambda: next(ids),
    )
    now = T0 + timedelta(hours=1)
    common = {
        "created_at": now,
        "cp_id": "cp_7",
        "product_id": "extra",
        "entity_id": "a",
        "per_entity": False,
        "add_on": True,
        "anchor": T0,
    }
    assert rows == [
        RowState(
            id="r1",
            feature_id="messages",
            granted=D(5),
            balance=D(5),
            item_index=0,
            billing="usage",
            max_purchase=D(20),
            reset="month",
            next_reset_at=utc(2025, 2, 28, 10),
            renews_with_product=True,
            included=D(5),
            **common,  # type: ignore[arg-type]
        ),
        RowState(
            id="r2",
            feature_id="credits",
            granted=D(30),  # ceil(25 / 10) = 3 packs of 10
            balance=D(30),
            item_index=1,
            billing="prepaid",
            reset="month",
            next_reset_at=utc(2025, 2, 28, 10),
            renews_with_product=True,
            **common,  # type: ignore[arg-type]
        ),
        RowState(
            id="r3",
            feature_id="words",
            granted=D(7),
            balance=D(7),
            item_index=2,
            reset="day",
            reset_count=3,
            next_reset_at=utc(2025, 2, 3, 10),
            included=D(7),
            **common,  # type: ignore[arg-type]
        ),
    ]


def test_per_entity_rows_go_to_the_entities_of_their_feature_and_of_the_product() -> None:
    """EN3: given entities a, b (users) and x (bots), when a product with a per-user item is
    attached to the customer, then a and b get a row each (marked per_entity) and x none;
    when it is attached to entity b, then only b gets one."""
    from autumn_core.model import EntityState

    product = Product("p", items=[Item.feature("messages", included=40, per_entity="users")])
    entities = [EntityState("a", "users", T0), EntityState("b", "users", T0)]
    entities.append(EntityState("x", "bots", T0))
    types = {"messages": "metered", "users": "allocated", "bots": "allocated"}

    def owners(entity_id: str | None) -> list[tuple[str | None, bool]]:
        cp = ProductState("cp_1", "p", 1, "active", T0, entity_id=entity_id)
        made = product_rows(product, cp, types, entities, T0, reset_anchor=T0, new_id=new_id)
        return [(r.entity_id, r.per_entity) for r in made]

    assert owners(None) == [("a", True), ("b", True)]
    assert owners("b") == [("b", True)]


def test_ro2_a_fraction_over_the_cap_is_trimmed_and_a_unit_or_less_is_kept() -> None:
    """RO2: given rollovers of 1 and 4.5 under a cap of 5, then half a unit is trimmed from
    the older; a rollover of exactly 1 (or 0.5) is kept, only empty ones go."""
    older = roll(1, expires_at=utc(2025, 3, 1))
    newer = roll("4.5", expires_at=utc(2025, 4, 1))
    trimmed = cap_rollovers([newer, older], D(5))
    assert [(x.amount, x.balance) for x in trimmed] == [(D("0.5"), D("0.5")), (D("4.5"), D("4.5"))]
    assert [x.balance for x in cap_rollovers([older, roll("0.5")], None)] == [D(1), D("0.5")]


def test_ro2_rollovers_that_never_expire_are_trimmed_last() -> None:
    """RO2: given a never-expiring rollover of 5 and one of 5 expiring on 1 March, under a cap
    of 5, then the expiring one is trimmed (and dropped), the never-expiring one stays."""
    forever = roll(5, expires_at=None)
    expiring = roll(5, expires_at=utc(2025, 3, 1))
    assert cap_rollovers([forever, expiring], D(5)) == (forever,)


def test_ro1_a_leftover_of_a_fraction_or_of_one_rolls_over_with_a_new_id() -> None:
    """RO1: given 0.5 (then 1) left at the reset of a rolling row, then a rollover of that
    amount is kept, under the id the reset made for it."""
    for left in ("0.5", "1"):
        r = row(granted=10, balance=left, reset="month", rollover=Rollover())
        (ro,) = reset_row(r, utc(2025, 2, 28, 10), new_id=lambda: "ro_new").rollovers
        assert (ro.id, ro.amount, ro.balance) == ("ro_new", D(left), D(left))


def test_ro1_a_late_reset_dates_its_rollover_from_the_missed_boundary() -> None:
    """RO1, S3: given a row due on 28 Feb reset only on 10 March, then its rollover is created
    at 28 Feb and expires a month after it (28 Mar), not a month after the late reset."""
    r = row(granted=10, balance=4, reset="month", rollover=Rollover(expires_after_months=1))
    assert r.next_reset_at == utc(2025, 2, 28, 10)
    (ro,) = reset_row(r, utc(2025, 3, 10), new_id=new_id).rollovers
    assert (ro.created_at, ro.expires_at) == (utc(2025, 2, 28, 10), utc(2025, 3, 28, 10))


def test_e22_a_positive_leftover_is_not_persisted_as_overage() -> None:
    """E22: given 0.5 left (not overage) when overage persists, then the row refills to 10."""
    r = row(granted=10, balance="0.5", reset="month")
    assert reset_row(r, utc(2025, 3, 1), new_id=new_id, persist_overage=True).balance == D(10)


def test_a_renewal_keeps_the_next_reset_it_is_given() -> None:
    """S7: given a monthly row renewed with its period ending 15 March (not the anchor's
    boundary), then that is its next reset; a row that never resets keeps none."""
    r = row(granted=10, balance=2, reset="month")
    renewed = reset_row(r, utc(2025, 2, 28, 10), new_id=new_id, next_reset_at=utc(2025, 3, 15))
    assert renewed.next_reset_at == utc(2025, 3, 15)
    never = row(granted=10, balance=2)
    assert reset_row(never, utc(2025, 2, 28, 10), new_id=new_id).next_reset_at is None
