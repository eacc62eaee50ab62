"""Planning an attach (A2-A5, T1-T11, Q1-Q5, P9-P10): the scenario, the trial, the invoice lines
and the customer state once provisioned, with nothing written or sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import attrs

from autumn_core.app import billing
from autumn_core.app.attach.args import AttachArgs
from autumn_core.app.context import Context
from autumn_core.app.provisioning import (
    activate,
    carry_into,
    drop_products,
    live_main_in,
    new_product_state,
    replace_product,
    rows_for,
    scheduled_in,
    with_period,
    with_trial,
)
from autumn_core.app.renewals import align_rows, in_trial_period
from autumn_core.app.seats import count_entities_replacing
from autumn_core.app.trials import TrialClaim, claimed, explicit_trial_claim, own_trial_claim
from autumn_core.app.unit import Unit
from autumn_core.catalog import FreeTrial, Product
from autumn_core.errors import ProductAlreadyAttached
from autumn_core.model import ZERO, CustomerState, InvoiceLineRecord, ProductState
from autumn_core.results import UNSET
from autumn_core.rules.classify import is_upgrade
from autumn_core.rules.periods import trial_end
from autumn_core.rules.pricing import money, packs_amount, prorate
from autumn_core.rules.rows import prepaid_packs, starting_balance


@attrs.frozen
class Plan:
    scenario: str
    product: Product
    #: The customer state once provisioned (not yet put).
    state: CustomerState
    #: The new, scheduled or updated CustomerProduct; None when nothing is attached.
    cp: ProductState | None
    lines: tuple[InvoiceLineRecord, ...]
    trial_ends_at: datetime | None
    #: The trial claim to insert (T5) when the plan is carried out.
    trial_claim: TrialClaim | None
    next_cycle_at: datetime | None
    next_cycle_total: Decimal
    #: CO4: added to an existing paid cycle (add-on, entity product, upgrade, quantity change).
    merged: bool
    #: The product needs a payment method now (paid lines, or a card-required trial).
    needs_payment: bool

    @property
    def due(self) -> Decimal:
        return billing.total(self.lines)


def ref_state(unit: Unit, a: AttachArgs) -> CustomerState:
    state = unit.get_or_create(a.customer, a.customer_data)
    unit.entity_check(state, a.entity_id)
    return state


def paid_cycle(state: CustomerState, now: datetime) -> ProductState | None:
    """The customer's live paid recurring cycle (T2, CO4): customer-scoped main first."""
    cycles = [p for p in state.products if billing.is_recurring_live(p)]
    cycles.sort(key=lambda p: (p.entity_id is not None, not p.is_main, p.created_at))
    return cycles[0] if cycles else None


def plan_attach(
    unit: Unit, state: CustomerState, a: AttachArgs, *, allow_trial: bool = True
) -> Plan:
    ctx = unit.ctx
    now = unit.now
    product = a.product
    version = ctx.registry.latest[product.id]
    scope = a.entity_id
    cycle = paid_cycle(state, now)
    if product.add_on or product.is_one_off:
        # A2a: alongside, never replacing or scheduling anything.
        scenario = "add_on" if product.add_on else "one_off"
        return _plan_alongside(unit, state, a, scenario, version, cycle, allow_trial)
    current = next(iter(live_main_in(state, product.group, scope)), None)
    if current is None:
        return _plan_alongside(unit, state, a, "new", version, cycle, allow_trial)
    if current.product_id == product.id:
        effective = {**current.quantities, **(current.pending_quantities or {})}
        if a.quantities is None or all(
            effective.get(k, _included(product, k)) == v for k, v in a.quantities.items()
        ):
            raise ProductAlreadyAttached(
                f"customer {state.id!r} already has product {product.id!r}"
                + (f" on entity {scope!r}" if scope else "")
                + (" (canceling: use uncancel)" if current.canceled_at else "")
            )
        return _plan_update_quantity(unit, state, a, current)
    old_product = billing.product_of(ctx, current)
    if is_upgrade(old_product, product, ctx.registry.feature_types):
        return _plan_upgrade(unit, state, a, current, old_product, version, allow_trial)
    return _plan_downgrade(unit, state, a, current, version)


def _included(product: Product, feature_id: str) -> Decimal:
    for item in product.items:
        if item.is_prepaid and item.feature_id == feature_id:
            return item.included or ZERO
    return ZERO


def _own_trial(
    unit: Unit, state: CustomerState, a: AttachArgs, allow_trial: bool
) -> tuple[FreeTrial | None, TrialClaim | None]:
    """T1, T3, T4: the trial this attach grants, and the claim that makes it unique (T5).

    Only reads here; the claim is inserted when the attach is carried out.
    """
    product = a.product
    if not allow_trial or a.free_trial is None:
        return None, None
    if isinstance(a.free_trial, FreeTrial):
        return a.free_trial, explicit_trial_claim(product, a.entity_id)
    trial = product.free_trial
    if trial is None:
        return None, None
    claim = own_trial_claim(product, a.entity_id, state.fingerprint)
    if claimed(unit, state.pk, claim):
        return None, None
    return trial, claim


def _quantities(a: AttachArgs, carried: Mapping[str, Decimal] | None = None) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for item in a.product.items:
        if not item.is_prepaid:
            continue
        if a.quantities is not None and item.feature_id in a.quantities:
            out[item.feature_id] = a.quantities[item.feature_id]
        elif carried is not None and item.feature_id in carried and item.interval != "one_off":
            out[item.feature_id] = carried[item.feature_id]  # Q2: packs carry on an upgrade
    return out


def _advance_total(
    ctx: Context, product: Product, cp: ProductState, state: CustomerState, now: datetime
) -> Decimal:
    """What the product invoices in advance at each cycle start (base, packs, paid seats)."""
    return billing.total(
        billing.cycle_lines(
            ctx,
            product,
            cp,
            state.rows,
            now=now,
            include_one_off=False,
        )
    )


def _plan_alongside(
    unit: Unit,
    state: CustomerState,
    a: AttachArgs,
    scenario: str,
    version: int,
    cycle: ProductState | None,
    allow_trial: bool,
) -> Plan:
    """new, add_on and one_off: the product is added; nothing else changes (A2a, A2c)."""
    ctx = unit.ctx
    now = unit.now
    product = a.product
    cp = new_product_state(unit, product, version, entity_id=a.entity_id, quantities=_quantities(a))
    merged = (
        product.is_recurring_paid
        and cycle is not None
        and (scenario == "add_on" or a.entity_id is not None)
    )
    trial_ends: datetime | None = None
    claim: TrialClaim | None = None
    trial: FreeTrial | None = None
    if merged and a.free_trial is UNSET and cycle is not None:
        # T2: merged into the customer's cycle, the product inherits its trial state.
        if cycle.is_trialing(now) and allow_trial:
            inherited = own_trial_claim(product, a.entity_id, state.fingerprint)
            if not claimed(unit, state.pk, inherited):
                trial_ends = cycle.trial_ends_at
                claim = inherited
    else:
        trial, claim = _own_trial(unit, state, a, allow_trial)
        if trial is not None:
            trial_ends = trial_end(now, trial.length, trial.duration)
    lines: list[InvoiceLineRecord] = []
    card_required = True
    if trial_ends is not None:
        cp = with_trial(cp, product, trial_ends, now)
        src = trial if trial is not None else product.free_trial
        card_required = src.card_required if src is not None else True
        if merged and cycle is not None:
            card_required = False  # the cycle already decided how it pays
    elif product.is_recurring_paid:
        if (
            merged
            and cycle is not None
            and cycle.current_period_end is not None
            and billing.product_of(ctx, cycle).billing_interval() == product.billing_interval()
        ):
            # Added to the existing cycle: same anchor and period, the rest of it charged now.
            cp = with_period(
                cp,
                product,
                anchor=cycle.billing_anchor or now,
                start=cycle.current_period_start or now,
                end=cycle.current_period_end,
            )
            cp = attrs.evolve(cp, reset_anchor=cycle.billing_anchor or now)
            prorated = True
        else:
            cp = with_period(cp, product, anchor=now, start=now)
            prorated = False
    else:
        prorated = False
    new_state = activate(unit, state, product, cp, refuse_over_limit=True)
    if trial_ends is None and not product.is_free:
        lines = _first_period_lines(ctx, product, cp, new_state, now, prorated)
    next_at = cp.current_period_end if product.is_recurring_paid else None
    return Plan(
        scenario=scenario,
        product=product,
        state=new_state,
        cp=cp,
        lines=tuple(lines),
        trial_ends_at=trial_ends,
        trial_claim=claim,
        next_cycle_at=next_at,
        next_cycle_total=_advance_total(ctx, product, cp, new_state, now) if next_at else ZERO,
        merged=merged,
        needs_payment=not product.is_free and (trial_ends is None or card_required),
    )


def _plan_upgrade(
    unit: Unit,
    state: CustomerState,
    a: AttachArgs,
    current: ProductState,
    old: Product,
    version: int,
    allow_trial: bool,
) -> Plan:
    """A3, A5, P9, T10: the current product ends now and the new one starts now."""
    ctx = unit.ctx
    now = unit.now
    product = a.product
    old_trialing = current.is_trialing(now)
    old_paid = billing.is_recurring_live(current) and not old_trialing
    lines: list[InvoiceLineRecord] = []
    old_rows = [r for r in state.rows if r.cp_id == current.instance_id]
    if old_paid:
        # Credit for the unused time of the old fixed prices (P9), then its overage (A3).
        lines += billing.cycle_lines(
            ctx,
            old,
            current,
            old_rows,
            now=now,
            include_one_off=False,
            prorated=True,
            sign=-1,
        )
        lines += billing.arrears_lines(
            ctx, old, current, old_rows, start=current.current_period_start, end=now
        )
    trial, claim = _own_trial(unit, state, a, allow_trial)
    trial_ends = trial_end(now, trial.length, trial.duration) if trial is not None else None
    cp = new_product_state(
        unit,
        product,
        version,
        entity_id=a.entity_id,
        quantities=_quantities(a, current.quantities),
    )
    # S1: the reset anchor is kept from the replaced product.
    cp = attrs.evolve(cp, reset_anchor=current.reset_anchor or now)
    prorated = False
    if trial_ends is not None:
        cp = with_trial(cp, product, trial_ends, now)
        cp = attrs.evolve(cp, reset_anchor=current.reset_anchor or now)
    elif product.is_recurring_paid:
        same_cycle = old_paid and old.billing_interval() == product.billing_interval()
        if same_cycle and current.current_period_end is not None:
            cp = with_period(
                cp,
                product,
                anchor=current.billing_anchor or now,
                start=current.current_period_start or now,
                end=current.current_period_end,
            )
            prorated = True
        else:
            # Free -> paid, from a trial, or another interval: a new cycle starts now (S1, T10).
            cp = with_period(cp, product, anchor=now, start=now)
    # Rows: fresh, then what carries over from the old product (A5, RO6).
    fresh = rows_for(unit, state, product, cp, reset_anchor=cp.reset_anchor or now)
    new_rows, kept = carry_into(unit, old_rows, fresh, product)
    ended = attrs.evolve(current, status="expired", canceled_at=now, ends_at=now)
    new_state = replace_product(state, ended)
    new_state = attrs.evolve(
        new_state,
        rows=(
            *(r for r in new_state.rows if r.cp_id != current.instance_id),
            *kept,
        ),
    )
    # A3: the group's scheduled product is deleted.
    new_state = drop_products(
        new_state, {p.instance_id for p in scheduled_in(new_state, product.group, a.entity_id)}
    )
    new_state = attrs.evolve(
        new_state, products=(*new_state.products, cp), rows=(*new_state.rows, *new_rows)
    )
    new_state, seat_lines = count_entities_replacing(unit, new_state, into=new_rows)  # EN2
    lines += seat_lines
    if trial_ends is None and not product.is_free:
        lines += _first_period_lines(ctx, product, cp, new_state, now, prorated)
    next_at = cp.current_period_end if product.is_recurring_paid else None
    next_total = _advance_total(ctx, product, cp, new_state, now) if next_at else ZERO
    if old_trialing:
        # T10: the products that shared the old trial move with it, or convert now.
        new_state, moved_lines, moved_total = _move_shared_trial(
            unit, new_state, current, trial_ends, next_at
        )
        lines += moved_lines
        next_total += moved_total
    card_required = trial is None or trial.card_required
    return Plan(
        scenario="upgrade",
        product=product,
        state=new_state,
        cp=cp,
        lines=tuple(lines),
        trial_ends_at=trial_ends,
        trial_claim=claim,
        next_cycle_at=next_at,
        next_cycle_total=next_total,
        merged=old_paid,
        needs_payment=bool(lines) or (not product.is_free and card_required),
    )


def _move_shared_trial(
    unit: Unit,
    state: CustomerState,
    current: ProductState,
    trial_ends: datetime | None,
    next_at: datetime | None,
) -> tuple[CustomerState, list[InvoiceLineRecord], Decimal]:
    """T10 (last bullet), T2/T9: the upgraded product's trial was a cycle other products
    joined (add-ons, entity products). A new trial moves their trial end to its end; no new
    trial ends it for all of them now, and their first full period is billed with the upgrade.

    Returns the new state, the lines to add to the upgrade's invoice, and what the moved
    products add to the next cycle's in-advance total (when it starts at ``next_at``).
    """
    ctx = unit.ctx
    now = unit.now
    lines: list[InvoiceLineRecord] = []
    next_total = ZERO
    shared = [
        p
        for p in state.products
        if p.instance_id != current.instance_id
        and billing.is_recurring_live(p)
        and p.is_trialing(now)
        and p.trial_ends_at == current.trial_ends_at
        and in_trial_period(p)
    ]
    for p in shared:
        product = billing.product_of(ctx, p)
        if trial_ends is not None:
            moved = attrs.evolve(
                p,
                trial_ends_at=trial_ends,
                billing_anchor=trial_ends,
                current_period_end=trial_ends,
            )
        else:
            moved = with_period(attrs.evolve(p, trial_ends_at=now), product, anchor=now, start=now)
        state = align_rows(replace_product(state, moved), moved)
        if trial_ends is None:
            lines += billing.cycle_lines(
                ctx,
                product,
                moved,
                state.rows,
                now=now,
                include_one_off=False,
            )
        at = moved.current_period_end
        if next_at is not None and at == next_at:
            next_total += _advance_total(ctx, product, moved, state, now)
    return state, lines, next_total


def _plan_downgrade(
    unit: Unit, state: CustomerState, a: AttachArgs, current: ProductState, version: int
) -> Plan:
    """A4, T11: the switch is scheduled for the current period's end (or the trial end)."""
    ctx = unit.ctx
    now = unit.now
    product = a.product
    ends = current.trial_ends_at if current.is_trialing(now) else current.current_period_end
    ends = ends or now
    canceling = attrs.evolve(current, canceled_at=now, ends_at=ends)
    state2 = replace_product(state, canceling)
    state2 = drop_products(
        state2, {p.instance_id for p in scheduled_in(state2, product.group, a.entity_id)}
    )
    cp = new_product_state(
        unit,
        product,
        version,
        entity_id=a.entity_id,
        status="scheduled",
        quantities=_quantities(a),
        started_at=ends,
    )
    state2 = attrs.evolve(state2, products=(*state2.products, cp))
    total = ZERO
    if not product.is_free:
        total = billing.total(
            billing.advance_lines(
                ctx, product, cp, (), now=ends, start=ends, end=None, include_one_off=True
            )
        )
    return Plan(
        scenario="downgrade",
        product=product,
        state=state2,
        cp=cp,
        lines=(),
        trial_ends_at=None,
        trial_claim=None,
        next_cycle_at=ends,
        next_cycle_total=total,
        merged=True,
        needs_payment=False,
    )


def _plan_update_quantity(
    unit: Unit, state: CustomerState, a: AttachArgs, current: ProductState
) -> Plan:
    """Q5: new packs on the held product; usage is preserved because balances move by the delta."""
    ctx = unit.ctx
    now = unit.now
    product = billing.product_of(ctx, current)
    trialing = current.is_trialing(now)
    quantities = dict(current.quantities)
    pending = dict(current.pending_quantities or {})
    adjustments = list(current.next_cycle_adjustments)
    lines: list[InvoiceLineRecord] = []
    rows = {r.id: r for r in state.rows}
    assert a.quantities is not None
    for fid, wanted in a.quantities.items():
        index, item = next(
            (i, it) for i, it in enumerate(product.items) if it.is_prepaid and it.feature_id == fid
        )
        old_q = quantities.get(fid)
        old_units = starting_balance(item, old_q)
        new_units = starting_balance(item, wanted)
        pending.pop(fid, None)
        if new_units == old_units:
            quantities[fid] = wanted
            continue
        delta_price = packs_amount(item, prepaid_packs(item, wanted)) - packs_amount(
            item, prepaid_packs(item, old_q)
        )
        one_off = item.interval == "one_off"
        prorated_price = (
            delta_price
            if one_off
            else prorate(delta_price, current.current_period_start, current.current_period_end, now)
        )
        desc = f"{product.name or product.id}: {fid} {old_units} -> {new_units}"
        increase = new_units > old_units
        behaviour = item.on_increase if increase else item.on_decrease
        if not increase and behaviour == "none":
            # E28: balance and billed quantity stay until the next renewal applies it.
            pending[fid] = wanted
            continue
        quantities[fid] = wanted
        for r in list(rows.values()):
            if r.cp_id == current.instance_id and r.item_index == index:
                rows[r.id] = attrs.evolve(
                    r,
                    granted=r.granted + (new_units - old_units),
                    balance=r.balance + (new_units - old_units),
                )
        if trialing:
            continue  # a trial is charged nothing; conversion bills the new packs (T8)
        if behaviour in ("prorate_immediately",):
            lines.append(
                billing.line(
                    desc,
                    prorated_price,
                    product_id=product.id,
                    feature_id=fid,
                    quantity=new_units - old_units,
                    start=now,
                    end=current.current_period_end,
                )
            )
        elif behaviour == "bill_immediately":
            lines.append(
                billing.line(
                    desc,
                    delta_price,
                    product_id=product.id,
                    feature_id=fid,
                    quantity=new_units - old_units,
                    start=now,
                    end=current.current_period_end,
                )
            )
        elif behaviour == "prorate_next_cycle":
            adjustments.append((desc, fid, money(prorated_price)))
        # bill_next_cycle and no_prorations: nothing now.
    updated = attrs.evolve(
        current,
        quantities=quantities,
        pending_quantities=pending or None,
        next_cycle_adjustments=tuple(adjustments),
    )
    new_state = replace_product(state, updated)
    new_state = attrs.evolve(new_state, rows=tuple(rows[r.id] for r in new_state.rows))
    next_at = updated.current_period_end if product.is_recurring_paid else None
    next_q = {**quantities, **pending}
    return Plan(
        scenario="update_quantity",
        product=product,
        state=new_state,
        cp=updated,
        lines=tuple(lines),
        trial_ends_at=updated.trial_ends_at if trialing else None,
        trial_claim=None,
        next_cycle_at=next_at,
        next_cycle_total=(
            _advance_total(ctx, product, attrs.evolve(updated, quantities=next_q), new_state, now)
            if next_at
            else ZERO
        ),
        merged=True,
        needs_payment=bool(lines),
    )


def _first_period_lines(
    ctx: Context,
    product: Product,
    cp: ProductState,
    state: CustomerState,
    now: datetime,
    prorated: bool,
) -> list[InvoiceLineRecord]:
    """What a newly live product bills now: its period (or the rest of it) and one-off prices."""
    return billing.cycle_lines(
        ctx,
        product,
        cp,
        state.rows,
        now=now,
        include_one_off=True,
        prorated=prorated,
    )
