"""``AsyncAutumn``: the facade for asyncio code, without blocking the event loop.

Every call runs the synchronous engine on a bounded pool of worker threads (the stores are
thread-safe and each call is one store transaction), so a slow store or provider holds a
worker, never the loop. Pure stdlib: no framework is imported here.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from autumn_core.errors import InvalidRequest

if TYPE_CHECKING:
    from autumn_core.facade import Autumn
    from autumn_core.results import (
        AttachPreview,
        AttachResult,
        Balance,
        CheckResult,
        Customer,
        CustomerProduct,
        Entity,
        Event,
        GatewayEvent,
        Invoice,
        TrackRequest,
        TrackResult,
    )

T = TypeVar("T")


class _AsyncPart:
    def __init__(self, owner: AsyncAutumn, part: Any) -> None:
        self._owner = owner
        self._part = part

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._owner.run(getattr(self._part, name), *args, **kwargs)


class AsyncCustomers(_AsyncPart):
    async def create(self, id: str | None = None, **kwargs: Any) -> Customer:
        out: Customer = await self._call("create", id, **kwargs)
        return out

    async def get(self, id: Any) -> Customer:
        out: Customer = await self._call("get", id)
        return out

    async def get_by_email(self, email: str) -> Customer:
        out: Customer = await self._call("get_by_email", email)
        return out

    async def update(self, id: Any, **patch: Any) -> Customer:
        out: Customer = await self._call("update", id, **patch)
        return out

    async def delete(self, id: Any) -> None:
        await self._call("delete", id)

    async def list(self, **kwargs: Any) -> list[Customer]:
        out: list[Customer] = await self._call("list", **kwargs)
        return out


class AsyncBalances(_AsyncPart):
    async def set(self, customer_id: Any, feature_id: str, **kwargs: Any) -> Balance:
        out: Balance = await self._call("set", customer_id, feature_id, **kwargs)
        return out

    async def grant(self, customer_id: Any, feature_id: str, amount: Any, **kwargs: Any) -> Balance:
        out: Balance = await self._call("grant", customer_id, feature_id, amount, **kwargs)
        return out


class AsyncEntities(_AsyncPart):
    async def create(
        self, customer_id: Any, entity_id: str, feature_id: str, **kwargs: Any
    ) -> Entity:
        out: Entity = await self._call("create", customer_id, entity_id, feature_id, **kwargs)
        return out

    async def get(self, customer_id: Any, entity_id: str) -> Entity:
        out: Entity = await self._call("get", customer_id, entity_id)
        return out

    async def update(self, customer_id: Any, entity_id: str, **kwargs: Any) -> Entity:
        out: Entity = await self._call("update", customer_id, entity_id, **kwargs)
        return out

    async def list(self, customer_id: Any) -> list[Entity]:
        out: list[Entity] = await self._call("list", customer_id)
        return out

    async def delete(self, customer_id: Any, entity_id: str) -> None:
        await self._call("delete", customer_id, entity_id)


class AsyncEvents(_AsyncPart):
    async def list(self, customer_id: Any, **kwargs: Any) -> list[Event]:
        out: list[Event] = await self._call("list", customer_id, **kwargs)
        return out


class AsyncInvoices(_AsyncPart):
    async def list(self, customer_id: Any) -> list[Invoice]:
        out: list[Invoice] = await self._call("list", customer_id)
        return out


class AsyncAutumn:
    """The ``Autumn`` facade with awaitable methods (same names, arguments and results).

    ``AsyncAutumn(billing, max_workers=8)`` wraps an existing engine; ``sync`` is that engine.
    At most ``max_workers`` calls run at once; later ones wait their turn without blocking
    the loop. ``close()`` (or ``async with``) stops the pool and closes the engine.

    ``inline``: run calls on the loop itself, skipping the thread hop (which costs more than
    a whole in-memory check). Only right when no call can wait on I/O, so by default (None)
    it is chosen exactly when the store lives in this process (neither durable nor shared
    between processes) and there is no payment provider.
    """

    def __init__(
        self, billing: Autumn, *, max_workers: int = 8, inline: bool | None = None
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise InvalidRequest(f"max_workers must be a positive integer, got {max_workers!r}")
        if inline is None:
            caps = billing.store.capabilities
            inline = billing.gateway is None and not caps.durable and not caps.multi_process
        self.inline = bool(inline)
        self.sync = billing
        self.catalog = billing.catalog
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="autumn")
        self.customers = AsyncCustomers(self, billing.customers)
        self.balances = AsyncBalances(self, billing.balances)
        self.entities = AsyncEntities(self, billing.entities)
        self.events = AsyncEvents(self, billing.events)
        self.invoices = AsyncInvoices(self, billing.invoices)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run any synchronous callable on the worker pool (context variables carried over)."""
        if self.inline:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    async def check(self, customer_id: Any, feature_id: str, **kwargs: Any) -> CheckResult:
        return await self.run(self.sync.check, customer_id, feature_id, **kwargs)

    async def track(
        self, customer_id: Any, feature_id: str | None = None, **kwargs: Any
    ) -> TrackResult:
        return await self.run(self.sync.track, customer_id, feature_id, **kwargs)

    async def track_many(self, events: Iterable[TrackRequest]) -> list[TrackResult]:
        return await self.run(self.sync.track_many, list(events))

    async def attach(self, customer_id: Any, product_id: str, **kwargs: Any) -> AttachResult:
        return await self.run(self.sync.attach, customer_id, product_id, **kwargs)

    async def preview_attach(
        self, customer_id: Any, product_id: str, **kwargs: Any
    ) -> AttachPreview:
        return await self.run(self.sync.preview_attach, customer_id, product_id, **kwargs)

    async def cancel(self, customer_id: Any, product_id: str, **kwargs: Any) -> CustomerProduct:
        return await self.run(self.sync.cancel, customer_id, product_id, **kwargs)

    async def uncancel(self, customer_id: Any, product_id: str, **kwargs: Any) -> CustomerProduct:
        return await self.run(self.sync.uncancel, customer_id, product_id, **kwargs)

    async def billing_portal_url(self, customer_id: Any, return_url: str | None = None) -> str:
        return await self.run(self.sync.billing_portal_url, customer_id, return_url)

    async def handle_event(self, event: GatewayEvent) -> None:
        await self.run(self.sync.handle_event, event)

    async def process_due(self, *, limit: int | None = None) -> int:
        return await self.run(self.sync.process_due, limit=limit)

    async def recover(self, **kwargs: Any) -> int:
        return await self.run(self.sync.recover, **kwargs)

    async def close(self) -> None:
        """Wait for running calls, stop the pool, then close the engine."""
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)
        self.sync.close()

    async def __aenter__(self) -> AsyncAutumn:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
