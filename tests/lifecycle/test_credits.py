"""P12: a negative invoice total is a credit that reduces the customer's next invoices.

The credit is derived from the invoices themselves (negative totals, less the "Applied credit
balance" lines that spent it); the gateway is only ever asked for the net amount.
"""

from __future__ import annotations

from datetime import timedelta

from autumn_core import Autumn, Item, ManualClock, Price, Product
from autumn_core.app.billing import CREDIT_LINE
from autumn_memory import MemoryGateway

from .conftest import T0, D, Factory, base_products, totals

P36 = Product("p36", name="P36", price=Price(36), items=[Item.feature("messages", included=10)])
PACKS = Product(
    "packs",
    name="Packs",
    price=Price(10),
    items=[
        Item.priced(
            "exports", billing="prepaid", price=4, billing_units=50, interval="month", reset=None
        )
    ],
)


def products() -> list[Product]:
    return [*base_products(), P36, PACKS]


def _credit_then_two_charges(billing: Autumn, clock: ManualClock) -> None:
    # given $36/mo, canceled immediately 10 days into its 30-day period: a -$24 credit (X3)
    billing.attach("c", "p36")
    clock.advance(days=10)
    billing.cancel("c", "p36", immediately=True)
    # when a $20 product is attached, then a $20 add-on on its cycle
    billing.attach("c", "pro")
    billing.attach("c", "addon20")


def test_p12_credit_spent_on_the_next_invoices_without_gateway(
    make: Factory, clock: ManualClock
) -> None:
    billing = make(products(), gateway=None)
    _credit_then_two_charges(billing, clock)
    # then the $20 attach is covered by the credit and the next $20 carries the rest (-$4)
    assert totals(billing) == [D("36.00"), D("-24.00"), D("0.00"), D("16.00")]
    invoices = billing.invoices.list("c")
    credit_lines = [
        [(ln.description, ln.amount) for ln in inv.lines if ln.description == CREDIT_LINE]
        for inv in invoices
    ]
    assert credit_lines == [[], [], [(CREDIT_LINE, D("-20.00"))], [(CREDIT_LINE, D("-4.00"))]]
    assert [ln.amount for ln in invoices[2].lines] == [D("20.00"), D("-20.00")]
    assert invoices[2].lines[1].product_id is None
    assert all(inv.status == "paid" for inv in invoices)
    assert invoices[2].created_at == T0 + timedelta(days=10)


def test_p12_credit_used_up_then_invoices_are_full_again(make: Factory, clock: ManualClock) -> None:
    billing = make(products(), gateway=None)
    _credit_then_two_charges(billing, clock)
    # when a third charge comes (a one-off pack of $15)
    billing.attach("c", "pack")
    # then no credit is left to apply
    assert totals(billing)[-1] == D("15.00")
    assert [ln.amount for ln in billing.invoices.list("c")[-1].lines] == [D("15.00")]


def test_p12_memory_gateway_collects_only_the_net_amounts(
    make: Factory, clock: ManualClock, gateway: MemoryGateway
) -> None:
    billing = make(products())
    _credit_then_two_charges(billing, clock)
    # then the engine's invoices carry the credit, and the provider collected the net only
    assert totals(billing) == [D("36.00"), D("-24.00"), D("0.00"), D("16.00")]
    collected = [inv.collected for inv in gateway.invoices.values()]
    assert collected == [D("36.00"), D("0"), D("0"), D("16.00")]
    # the credit itself is never sent as money: the provider got no negative total
    assert all(inv.total >= 0 for inv in gateway.invoices.values())


def test_p12_renewal_spends_the_credit_left(make: Factory, clock: ManualClock) -> None:
    billing = make(products(), gateway=None)
    # given a -$24 credit and pro attached on day 10 ($20, fully covered, $4 left)
    billing.attach("c", "p36")
    clock.advance(days=10)
    billing.cancel("c", "p36", immediately=True)
    billing.attach("c", "pro")
    # when pro renews a month later
    clock.advance(days=30)
    billing.process_due()
    # then the renewal invoice is $20 - $4
    assert totals(billing) == [D("36.00"), D("-24.00"), D("0.00"), D("16.00")]


def test_p12_prepaid_pack_decrease_credit_reduces_the_next_invoice(
    make: Factory, clock: ManualClock
) -> None:
    billing = make(products(), gateway=None)
    # given $10 + 4 packs of 50 exports at $4 ($26), lowered to 1 pack on day 15 of 30
    billing.attach("c", "packs", quantities={"exports": 200})
    clock.advance(days=15)
    billing.attach("c", "packs", quantities={"exports": 50})
    # then 3 packs x $4 x 15/30 = -$6 is a credit, spent by the renewal: $10 + $4 - $6
    clock.advance(days=15)
    billing.process_due()
    assert totals(billing) == [D("26.00"), D("-6.00"), D("8.00")]


def test_p12_preview_shows_the_credit_the_attach_would_spend(
    make: Factory, clock: ManualClock
) -> None:
    billing = make(products(), gateway=None)
    billing.attach("c", "p36")
    clock.advance(days=10)
    billing.cancel("c", "p36", immediately=True)
    # when the $20 attach is previewed (A7): the lines it would invoice, credit included
    preview = billing.preview_attach("c", "pro")
    assert [(ln.description, ln.amount) for ln in preview.lines] == [
        ("Pro", D("20.00")),
        (CREDIT_LINE, D("-20.00")),
    ]
    assert preview.due_now == D("0.00")
    # and nothing was spent by previewing
    assert billing.attach("c", "pro").invoice.total == D("0.00")  # type: ignore[union-attr]
