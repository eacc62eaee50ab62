"""T10 (last bullet): upgrading a product on a shared trialing cycle moves the trial end of every
product on that cycle, or ends it for all of them when the target has no trial (T2, T9)."""

from __future__ import annotations

from datetime import timedelta

from autumn_core import Autumn, FreeTrial, ManualClock, Price, Product
from autumn_memory import MemoryGateway

from .conftest import T0, D, Factory, base_products, msgs, totals

PREMIUM21 = Product(
    "premium21", name="Premium 21", price=Price(50), free_trial=FreeTrial(21), items=[msgs(1000)]
)


def engine(make: Factory, **kw: object) -> Autumn:
    return make([*base_products(), PREMIUM21], **kw)


def trialing_with_add_on(billing: Autumn, clock: ManualClock) -> None:
    """pro-trial (7 days) with a $20/mo add-on that inherited its trial; then day 4."""
    billing.attach("c", "pro-trial")
    add_on = billing.attach("c", "addon20")
    assert add_on.trial_ends_at == T0 + timedelta(days=7)
    clock.advance(days=4)


def products(billing: Autumn) -> dict[str, tuple[str, object, object, object]]:
    return {
        p.id: (p.status, p.trial_ends_at, p.current_period_start, p.current_period_end)
        for p in billing.customers.get("c").products
    }


def test_t10_upgrade_to_a_fresh_trial_moves_the_add_on_trial_end(
    make: Factory, clock: ManualClock
) -> None:
    billing = engine(make)
    trialing_with_add_on(billing, clock)
    day4, day25 = T0 + timedelta(days=4), T0 + timedelta(days=25)
    # when the main product is upgraded on day 4 to one with an unused 21-day trial
    up = billing.attach("c", "premium21")
    # then both trial to day 25, and nothing is billed now
    assert (up.scenario, up.trial_ends_at, up.invoice) == ("upgrade", day25, None)
    assert products(billing) == {
        "premium21": ("trialing", day25, day4, day25),
        "addon20": ("trialing", day25, T0, day25),
    }
    assert totals(billing) == []
    # when day 7 (the old trial end) passes: nothing converts
    clock.advance(days=3)
    billing.process_due()
    assert totals(billing) == []
    # when day 25 comes: both convert together on one invoice dated at the trial end
    clock.set(day25)
    billing.process_due()
    [conversion] = billing.invoices.list("c")
    assert conversion.total == D("70.00")
    assert conversion.created_at == day25
    assert sorted((ln.product_id, ln.amount) for ln in conversion.lines) == [
        ("addon20", D("20.00")),
        ("premium21", D("50.00")),
    ]
    end = day25 + timedelta(days=30)  # Apr 26 -> May 26
    assert products(billing) == {
        "premium21": ("active", day25, day25, end),
        "addon20": ("active", day25, day25, end),
    }


def test_t10_upgrade_without_trial_ends_the_shared_trial_and_bills_both_now(
    make: Factory, clock: ManualClock, gateway: MemoryGateway
) -> None:
    billing = engine(make)
    trialing_with_add_on(billing, clock)
    day4 = T0 + timedelta(days=4)
    # when the main product is upgraded on day 4 to premium (no trial)
    up = billing.attach("c", "premium")
    # then the trial ends for both; their first full periods are charged now, on one invoice
    assert up.invoice is not None and up.invoice.total == D("70.00")
    assert sorted((ln.product_id, ln.amount) for ln in up.invoice.lines) == [
        ("addon20", D("20.00")),
        ("premium", D("50.00")),
    ]
    end = day4 + timedelta(days=30)  # Apr 5 -> May 5
    assert products(billing) == {
        "premium": ("active", None, day4, end),
        "addon20": ("active", day4, day4, end),
    }
    # and the provider collected it once (after the trial's $0 start); nothing converts on
    # day 7, and both renew on May 5
    assert [i.collected for i in gateway.invoices.values()] == [D("0"), D("70.00")]
    clock.advance(days=3)
    billing.process_due()
    assert totals(billing) == [D("70.00")]
    clock.set(end)
    billing.process_due()
    assert sorted(totals(billing)) == [D("20.00"), D("50.00"), D("70.00")]


def test_t10_preview_of_the_trial_ending_upgrade_counts_the_add_on(
    make: Factory, clock: ManualClock
) -> None:
    billing = engine(make, gateway=None)
    trialing_with_add_on(billing, clock)
    preview = billing.preview_attach("c", "premium")
    assert (preview.due_now, preview.next_cycle_total) == (D("70.00"), D("70.00"))
    assert preview.next_cycle_at == T0 + timedelta(days=34)
    moved = billing.preview_attach("c", "premium21")
    assert (moved.due_now, moved.next_cycle_at, moved.next_cycle_total) == (
        D("0"),
        T0 + timedelta(days=25),
        D("70.00"),
    )


def test_t10_a_product_on_another_trial_end_is_not_moved(make: Factory, clock: ManualClock) -> None:
    billing = engine(make, gateway=None)
    # given an add-on with its own 5-day trial (FreeTrial passed explicitly, no merge)
    billing.attach("c", "pro-trial")
    billing.attach("c", "addon20-trial", free_trial=FreeTrial(5))
    clock.advance(days=4)
    billing.attach("c", "premium21")
    trials = {p.id: p.trial_ends_at for p in billing.customers.get("c").products}
    assert trials == {"premium21": T0 + timedelta(days=25), "addon20-trial": T0 + timedelta(days=5)}
