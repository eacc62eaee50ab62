"""Grant for Free: ``attach(..., free=True)`` enables a priced product with no charge, no invoice
(the seed's "enable a product in advance for invoice deals"), and renewals stay free."""

from __future__ import annotations

from decimal import Decimal

import pytest

from autumn_core import Autumn, ByEmail, InvalidRequest, ManualClock


def test_grant_for_free_enables_a_priced_product_without_charge(
    billing: Autumn, clock: ManualClock
) -> None:
    # given a pre-created customer (no id yet)
    billing.customers.create(email="cfo@bigco.com")
    # when the operator previews and then grants "pro" ($20/month) for free
    preview = billing.preview_attach(ByEmail("cfo@bigco.com"), "pro", free=True)
    result = billing.attach(ByEmail("cfo@bigco.com"), "pro", free=True)
    # then nothing is due and no invoice is made; there is no trial either
    assert preview.due_now == Decimal(0) and preview.lines == []
    assert result.invoice is None and result.checkout_url is None
    assert result.product is not None and result.product.status == "active"
    assert result.product.trial_ends_at is None
    # and the claim by id keeps it, with its features
    claimed = billing.customers.create("bigco", email="CFO@bigco.com")
    assert claimed.has_product("pro")
    assert claimed.features["messages"].granted == Decimal(1000)
    assert billing.invoices.list("bigco") == []
    # and a renewal a month later charges nothing either
    clock.advance(days=32)
    billing.process_due()
    assert billing.invoices.list("bigco") == []
    assert billing.customers.get("bigco").has_product("pro")


def test_an_ordinary_attach_still_charges(billing: Autumn) -> None:
    billing.customers.create("ann")
    result = billing.attach("ann", "pro", free_trial=None)
    assert result.invoice is not None and result.invoice.total == Decimal("20.00")


def test_free_must_be_a_bool(billing: Autumn) -> None:
    billing.customers.create("ann")
    with pytest.raises(InvalidRequest, match="free must be a bool"):
        billing.attach("ann", "pro", free="yes")  # type: ignore[arg-type]
    assert not billing.customers.get("ann").has_product("pro")


def test_a_recorded_free_attach_replays_as_free(billing: Autumn) -> None:
    # given the record recover() keeps of an attach granted for free
    from autumn_core.app.attach import args_from_payload, operation_payload, validate_attach

    args = validate_attach(billing._ctx, "ann", "pro", free=True)
    # when it is read back
    again = args_from_payload(billing._ctx, operation_payload(args))
    # then it is the same free attach
    assert again.free and again.product.is_free and again.free_trial is None
    assert again.fingerprint() == args.fingerprint()
