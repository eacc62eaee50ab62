"""Prepaid quantities (Q1-Q5), tiers (P1-P4), E27, E28, E35."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from autumn_core import INF, Item, ManualClock, Price, Product, Tier
from autumn_core.rules.pricing import billable_units, money, tiered_amount
from tests.lifecycle.conftest import T0, D, Factory, totals


def prepaid(feature: str, **kw: object) -> Product:
    return Product("p", price=Price(20), items=[Item.priced(feature, billing="prepaid", **kw)])  # type: ignore[arg-type]


def test_q1_total_units_round_up_to_packs(make: Factory) -> None:
    # included 50, packs of 50 at $4: 240 units -> 4 packs, $16, balance 250
    billing = make(
        [
            Product(
                "p",
                items=[
                    Item.priced(
                        "exports", billing="prepaid", included=50, billing_units=50, price=4
                    )
                ],
            )
        ]
    )
    result = billing.attach("c", "p", quantities={"exports": 240})
    assert result.invoice is not None and result.invoice.total == D("16.00")
    assert billing.customers.get("c").features["exports"].remaining == 250
    assert result.product is not None and result.product.quantities == {"exports": D(240)}


def test_q2_missing_quantity_is_the_included_amount_only(make: Factory) -> None:
    billing = make([prepaid("exports", included=50, billing_units=50, price=4)])
    result = billing.attach("c", "p")
    assert result.invoice is not None and result.invoice.total == D("20.00")
    assert billing.customers.get("c").features["exports"].remaining == 50


def test_p1_billable_units_round_up() -> None:
    item = Item.priced("messages", price=2, billing_units=500)
    assert billable_units(D(2300), D(500)) == 2500
    assert money(tiered_amount(item, billable_units(D(2300), D(500)))) == D("10.00")


def test_p3_graduated_tiers() -> None:
    item = Item.priced("messages", tiers=[Tier(200, "0.05"), Tier(INF, "0.03")])
    assert money(tiered_amount(item, D(350))) == D("14.50")


@pytest.mark.parametrize(("units", "amount"), [(80, "6.40"), (400, "29.00"), (1200, "48.00")])
def test_p4_volume_tiers(units: int, amount: str) -> None:
    item = Item.priced(
        "messages",
        tiers=[Tier(100, "0.08"), Tier(1000, "0.06", flat_amount=5), Tier(INF, "0.04")],
        tier_mode="volume",
    )
    assert money(tiered_amount(item, D(units))) == D(amount)


def test_p3_graduated_tiers_on_a_prepaid_attach(make: Factory) -> None:
    billing = make(
        [
            Product(
                "p",
                items=[
                    Item.priced(
                        "exports",
                        billing="prepaid",
                        tiers=[Tier(200, "0.05"), Tier(INF, "0.03")],
                    )
                ],
            )
        ]
    )
    assert billing.preview_attach("c", "p", quantities={"exports": 350}).due_now == D("14.50")


def test_p4_volume_tiers_on_a_prepaid_attach(make: Factory) -> None:
    billing = make(
        [
            Product(
                "p",
                items=[
                    Item.priced(
                        "exports",
                        billing="prepaid",
                        tier_mode="volume",
                        tiers=[
                            Tier(100, "0.08"),
                            Tier(1000, "0.06", flat_amount=5),
                            Tier(INF, "0.04"),
                        ],
                    )
                ],
            )
        ]
    )
    result = billing.attach("c", "p", quantities={"exports": 400})
    assert result.invoice is not None and result.invoice.total == D("29.00")


def test_e35_base_credits_and_seats_come_to_80_a_month(make: Factory) -> None:
    billing = make(
        [
            Product(
                "team",
                price=Price(20),
                items=[
                    Item.priced(
                        "credits", billing="prepaid", included=500, billing_units=100, price=1
                    ),
                    Item.priced("seats", billing="prepaid", included=3, price=5),
                ],
            )
        ]
    )
    preview = billing.preview_attach("c", "team", quantities={"credits": 3000, "seats": 10})
    assert [ln.amount for ln in preview.lines] == [D("20.00"), D("25.00"), D("35.00")]
    assert preview.due_now == D("80.00") and preview.next_cycle_total == D("80.00")
    result = billing.attach("c", "team", quantities={"credits": 3000, "seats": 10})
    assert result.invoice is not None and result.invoice.total == D("80.00")


def test_q4_max_purchase_refuses_more(make: Factory) -> None:
    from autumn_core import InvalidRequest

    billing = make([prepaid("exports", included=10, price=1, max_purchase=100)])
    with pytest.raises(InvalidRequest):
        billing.attach("c", "p", quantities={"exports": 111})
    billing.attach("c", "p", quantities={"exports": 110})


def test_e27_update_quantity_at_cycle_start(make: Factory) -> None:
    billing = make(
        [Product("p", items=[Item.priced("exports", billing="prepaid", billing_units=12, price=8)])]
    )
    billing.attach("c", "p", quantities={"exports": 120})
    assert totals(billing) == [D("80.00")]
    preview = billing.preview_attach("c", "p", quantities={"exports": 240})
    assert (preview.scenario, preview.due_now) == ("update_quantity", D("80.00"))
    result = billing.attach("c", "p", quantities={"exports": 240})
    assert result.scenario == "update_quantity"
    assert billing.customers.get("c").features["exports"].remaining == 240


def test_q5_increase_mid_period_prorates_and_keeps_usage(make: Factory, clock: ManualClock) -> None:
    billing = make(
        [Product("p", items=[Item.priced("exports", billing="prepaid", billing_units=10, price=6)])]
    )
    billing.attach("c", "p", quantities={"exports": 10})
    billing.track("c", "exports", value=4)
    clock.advance(days=15)  # half of April left
    result = billing.attach("c", "p", quantities={"exports": 30})
    assert result.invoice is not None and result.invoice.total == D("6.00")  # 2 packs x $6 x 1/2
    b = billing.customers.get("c").features["exports"]
    assert (b.granted, b.remaining, b.usage) == (30, 26, 4)


def test_q5_decrease_prorate_immediately_credits(make: Factory, clock: ManualClock) -> None:
    billing = make(
        [Product("p", items=[Item.priced("exports", billing="prepaid", billing_units=10, price=6)])]
    )
    billing.attach("c", "p", quantities={"exports": 30})
    clock.advance(days=15)
    result = billing.attach("c", "p", quantities={"exports": 10})
    assert result.invoice is not None and result.invoice.total == D("-6.00")
    assert billing.customers.get("c").features["exports"].remaining == 10


def test_e28_on_decrease_none_keeps_the_balance_until_renewal(
    make: Factory, clock: ManualClock
) -> None:
    billing = make(
        [
            Product(
                "ent",
                items=[
                    Item.priced(
                        "exports",
                        billing="prepaid",
                        included=100,
                        billing_units=100,
                        price=10,
                        on_decrease="none",
                    )
                ],
            )
        ]
    )
    billing.entities.create("c", "e1", "users")
    billing.attach("c", "ent", entity_id="e1", quantities={"exports": 400})
    assert totals(billing) == [D("30.00")]
    result = billing.attach("c", "ent", entity_id="e1", quantities={"exports": 200})
    assert result.scenario == "update_quantity" and result.invoice is None
    assert billing.entities.get("c", "e1").features["exports"].remaining == 400
    clock.set(T0.replace(month=5) + timedelta(minutes=1))
    assert billing.entities.get("c", "e1").features["exports"].remaining == 200
    assert totals(billing) == [D("30.00"), D("10.00")]


def test_d8_same_quantities_are_already_attached(make: Factory) -> None:
    from autumn_core import ProductAlreadyAttached

    billing = make([prepaid("exports", billing_units=10, price=1)])
    billing.attach("c", "p", quantities={"exports": 50})
    with pytest.raises(ProductAlreadyAttached):
        billing.attach("c", "p", quantities={"exports": 50})


def test_p11_lines_are_rounded_half_up(make: Factory, clock: ManualClock) -> None:
    billing = make(
        [Product("a", price=Price(10), items=[]), Product("b", price=Price(20), items=[])]
    )
    billing.attach("c", "a")
    clock.advance(days=10)  # 20 of 30 days left: -6.666.. -> -6.67 and 13.333.. -> 13.33
    preview = billing.preview_attach("c", "b")
    assert [ln.amount for ln in preview.lines] == [D("-6.67"), D("13.33")]
    assert preview.due_now == D("6.66")
    assert all(isinstance(ln.amount, Decimal) for ln in preview.lines)
