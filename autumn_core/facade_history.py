"""The facade's history parts: ``billing.events`` and ``billing.invoices``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from autumn_core.app.billing import invoice_view
from autumn_core.app.unit import Unit
from autumn_core.errors import (
    FeatureNotFound,
    InvalidRequest,
    NotFound,
)
from autumn_core.facade_parts import _Part, _ref
from autumn_core.model import EventRecord
from autumn_core.results import (
    Event,
    EventAggregate,
    Invoice,
)
from autumn_core.rules.aggregate import BIN_SIZES, DEFAULT_MAX_GROUPS
from autumn_core.rules.aggregate import aggregate as aggregate_events
from autumn_core.values import (
    check_aware,
    check_id,
    json_copy,
)

#: The most bins one ``events.aggregate`` may return.
MAX_BINS = 5000


class Events(_Part):
    """``billing.events``: what was tracked."""

    def list(
        self,
        customer_id: Any,
        *,
        feature_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> list[Event]:
        """Tracked events of a customer, oldest first, filtered by feature and time.

        Example:
            ```python
            events = billing.events.list("user-1", feature_id="messages", limit=50)
            ```
        """
        _ref(customer_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidRequest(f"limit must be an integer in 1..1000, got {limit!r}")
        start_ = None if start is None else check_aware(start, "start")
        end_ = None if end is None else check_aware(end, "end")

        if feature_id is not None:
            check_id(feature_id, "feature_id")
        if starting_after is not None:
            check_id(starting_after, "starting_after")

        def body(unit: Unit) -> list[Event]:
            state = unit.get(customer_id)
            if starting_after is not None:
                _check_event_exists(unit, state.pk, starting_after)
            records = unit.tx.list_events(
                state.pk,
                feature_id=feature_id,
                start=start_,
                end=end_,
                limit=limit,
                starting_after=starting_after,
            )
            return [
                Event(
                    r.id,
                    state.id,
                    r.entity_id,
                    r.feature_id,
                    r.event_name,
                    r.value,
                    json_copy(dict(r.properties)),
                    r.timestamp,
                )
                for r in records
            ]

        return self._a._read(body)

    def aggregate(
        self,
        customer_id: Any,
        feature_ids: str | Iterable[str],
        *,
        start: datetime,
        end: datetime,
        bin_size: str = "day",
        count: bool = False,
        entity_id: str | None = None,
        group_by: str | None = None,
        max_groups: int = DEFAULT_MAX_GROUPS,
    ) -> EventAggregate:
        """Usage per time bin and per feature, from the customer's events in ``[start, end)``.

        ``bin_size``: ``"hour" | "day" | "week" | "month"`` (UTC); ``count=True`` counts events
        instead of summing values; ``group_by``: ``"properties.<key>"``, ``"$entity_id"`` or
        ``"$customer_id"`` (R16).

        Example:
            ```python
            from datetime import timedelta

            now = billing.clock.now()
            usage = billing.events.aggregate("user-1", "messages", start=now - timedelta(days=7), end=now)
            per_day = [(b.period_start, b.values["messages"]) for b in usage.bins]
            ```
        """
        _ref(customer_id)
        ids = [feature_ids] if isinstance(feature_ids, str) else list(feature_ids)
        if not ids:
            raise InvalidRequest("feature_ids: give at least one feature")
        catalog = self._a._ctx.catalog
        for fid in ids:
            if not isinstance(fid, str) or catalog.feature(fid) is None:
                raise FeatureNotFound(f"feature {fid!r} does not exist")
        start_ = check_aware(start, "start")
        end_ = check_aware(end, "end")
        if end_ <= start_:
            raise InvalidRequest(f"end must be after start, got {start_} .. {end_}")
        if bin_size not in BIN_SIZES:
            raise InvalidRequest(f"bin_size must be one of {BIN_SIZES}, got {bin_size!r}")
        hours = {"hour": 1, "day": 24, "week": 168, "month": 720}[bin_size]
        if (end_ - start_).total_seconds() / 3600 / hours > MAX_BINS:
            raise InvalidRequest(f"more than {MAX_BINS} {bin_size} bins: use a larger bin_size")
        if not isinstance(count, bool):
            raise InvalidRequest(f"count must be a bool, got {count!r}")
        if entity_id is not None:
            check_id(entity_id, "entity_id")
        if group_by is not None and not (
            group_by in ("$entity_id", "$customer_id")
            or (group_by.startswith("properties.") and len(group_by) > len("properties."))
        ):
            raise InvalidRequest(
                "group_by must be 'properties.<key>', '$entity_id' or '$customer_id',"
                f" got {group_by!r}"
            )
        if isinstance(max_groups, bool) or not isinstance(max_groups, int) or max_groups < 1:
            raise InvalidRequest(f"max_groups must be a positive integer, got {max_groups!r}")
        names = {f.id: tuple(f.event_names) for f in catalog.features}

        def body(unit: Unit) -> EventAggregate:
            state = unit.get(customer_id)
            if entity_id is not None:
                unit.entity_check(state, entity_id)
            records: list[EventRecord] = []
            after = None
            while True:
                batch = unit.tx.list_events(
                    state.pk,
                    feature_id=None,
                    start=start_,
                    end=end_,
                    limit=1000,
                    starting_after=after,
                )
                records.extend(r for r in batch if entity_id is None or r.entity_id == entity_id)
                if len(batch) < 1000:
                    break
                after = batch[-1].id
            return aggregate_events(
                records,
                ids,
                start=start_,
                end=end_,
                bin_size=bin_size,
                event_names=names,
                count=count,
                group_by=group_by,
                customer_id=state.id,
                max_groups=max_groups,
            )

        return self._a._read(body)


def _check_event_exists(unit: Unit, customer_pk: str, event_id: str) -> None:
    """``starting_after`` names one of the customer's events, as customers.list requires."""
    tx = unit.tx
    if tx.list_events(
        customer_pk, feature_id=None, start=None, end=None, limit=1, starting_after=event_id
    ):
        return
    # Nothing after it: the last event, or no such event (the store cannot say which).
    after: str | None = None
    while True:
        page = tx.list_events(
            customer_pk, feature_id=None, start=None, end=None, limit=1000, starting_after=after
        )
        if any(e.id == event_id for e in page):
            return
        if len(page) < 1000:
            raise NotFound(f"event {event_id!r} does not exist for this customer")
        after = page[-1].id


class Invoices(_Part):
    """``billing.invoices``: what was charged or credited."""

    def list(self, customer_id: Any) -> list[Invoice]:
        """The customer's invoices, oldest first.

        Example:
            ```python
            for invoice in billing.invoices.list("user-1"):
                print(invoice.created_at, invoice.status, invoice.total)
            ```
        """
        _ref(customer_id)

        def body(unit: Unit) -> list[Invoice]:
            state = unit.get(customer_id)
            return [invoice_view(state, r) for r in unit.tx.list_invoices(state.pk)]

        return self._a._read(body)
