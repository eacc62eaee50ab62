"""S7/T7/D7: work reached lazily after its instant is dated at that instant, not when it ran.

The library owns periods: a trial conversion processed days after the trial end starts its
first period at the trial end, and its invoice is created at the trial end too.
"""

from __future__ import annotations

from datetime import timedelta

from autumn_core import Autumn, ManualClock

from .conftest import T0, D, totals


def test_t7_s7_conversion_processed_late_is_dated_at_the_trial_end(
    billing: Autumn, clock: ManualClock
) -> None:
    # given pro-trial (7 days) attached at T0
    billing.attach("c", "pro-trial")
    te = T0 + timedelta(days=7)
    # when process_due first runs 5 days after the trial end
    clock.set(te + timedelta(days=5))
    billing.process_due()
    # then the conversion invoice and the first period start at the trial end
    [conversion] = billing.invoices.list("c")
    assert (conversion.total, conversion.created_at) == (D("20.00"), te)
    assert [(ln.period_start, ln.period_end) for ln in conversion.lines] == [
        (te, te + timedelta(days=30))
    ]
    [pro] = [p for p in billing.customers.get("c").products if p.id == "pro-trial"]
    assert (pro.status, pro.current_period_start, pro.current_period_end) == (
        "active",
        te,
        te + timedelta(days=30),
    )


def test_s7_missed_periods_each_invoice_dated_at_its_own_boundary(
    billing: Autumn, clock: ManualClock
) -> None:
    # given pro-trial whose trial ended, and one full period missed as well
    billing.attach("c", "pro-trial")
    te = T0 + timedelta(days=7)  # Apr 8
    clock.set(te + timedelta(days=33))  # May 11, after the May 8 renewal
    # when the lazy work is recorded, late
    billing.process_due()
    # then the conversion is dated Apr 8 and the renewal May 8
    invoices = billing.invoices.list("c")
    assert totals(billing) == [D("20.00"), D("20.00")]
    assert [i.created_at for i in invoices] == [te, te + timedelta(days=30)]
