"""Delivering the outbox (docs/rules.md EO3, EO4): take the due entries, hand each event to
every subscriber that has not had it, and record the outcome.

Entries are taken in a short write transaction that leases them (pushes their due time past
the lease), so a second deliverer, in this process or another, does not send them at the same
time; the subscribers are called outside any transaction (a slow receiver holds no lock); the
outcome is saved in one short write transaction per entry. A deliverer killed after taking
entries leaves them leased: they are due again when the lease ends, and sent again (at least
once, EO4).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from autumn_core.app.context import Context
from autumn_core.outbound import OutboxEntry
from autumn_core.ports import StoreTransaction
from autumn_core.subscribers import DeliveryPolicy, DeliveryReport, Subscription


def deliver(
    ctx: Context,
    subscriptions: Sequence[Subscription],
    policy: DeliveryPolicy,
    *,
    limit: int,
) -> DeliveryReport:
    """One round over the entries due now (at most ``limit``)."""
    if not subscriptions:
        # Nothing to hand events to: leave them pending for the subscribers still to come.
        return DeliveryReport()
    now = ctx.clock.now()

    def take(tx: StoreTransaction) -> list[OutboxEntry]:
        entries = tx.due_outbox(now, limit)
        for entry in entries:
            tx.save_outbox(attrs.evolve(entry, next_attempt_at=now + policy.lease))
        return entries

    delivered = retrying = dead = 0
    for entry in ctx.run(take, write=True):
        outcome = _send(ctx, entry, subscriptions, policy)
        _save(ctx, outcome)
        if outcome.status == "delivered":
            delivered += 1
        elif outcome.status == "dead":
            dead += 1
        else:
            retrying += 1
    return DeliveryReport(delivered=delivered, retrying=retrying, dead=dead)


def _save(ctx: Context, entry: OutboxEntry) -> None:
    ctx.run(lambda tx: tx.save_outbox(entry), write=True)


def _send(
    ctx: Context,
    entry: OutboxEntry,
    subscriptions: Sequence[Subscription],
    policy: DeliveryPolicy,
) -> OutboxEntry:
    event = entry.event
    done = list(entry.delivered_to)
    failed: list[str] = []
    errors: list[str] = []
    for sub in subscriptions:
        if sub.name in done or not sub.wants(event.type):
            continue
        try:
            sub.handler(event)
        except Exception as exc:  # a subscriber's failure is recorded, never raised (EO4)
            failed.append(sub.name)
            errors.append(f"{sub.name}: {exc}" if str(exc) else f"{sub.name}: {exc!r}")
        else:
            done.append(sub.name)
    after: datetime = ctx.clock.now()
    if not failed:
        return attrs.evolve(
            entry,
            status="delivered",
            attempts=entry.attempts + 1,
            next_attempt_at=after,
            delivered_to=tuple(done),
            failed_for=(),
            last_error=None,
        )
    attempts = entry.attempts + 1
    give_up = attempts >= policy.max_attempts
    return attrs.evolve(
        entry,
        status="dead" if give_up else "pending",
        attempts=attempts,
        next_attempt_at=after if give_up else after + policy.delay(attempts),
        delivered_to=tuple(done),
        failed_for=tuple(failed) if give_up else (),
        last_error="; ".join(errors)[:1000],
    )
