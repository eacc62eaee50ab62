"""``api(billing, secret_keys=[...])``: Autumn's ``/v1`` RPC routes as a Starlette app.

Mount it at ``/v1`` (``autumn serve`` does) or run it with ``python -m autumn_wire``. Every
request: route lookup, Bearer key, ``x-api-version``, a bounded body, the ``Idempotency-Key``
registry, then the operation on the engine's worker pool. Every failure is one Autumn error
body; an unexpected exception is logged and answered 500 ``internal_error`` without details.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from autumn_core import AsyncAutumn, Autumn, AutumnError
from autumn_wire import controls, ops, ops_billing, ops_events, ops_legacy
from autumn_wire.body import Body, parse_json
from autumn_wire.errors import WireError, internal_error, wire_error
from autumn_wire.guard import Keys, StoreIdempotencyKeys, check_version
from autumn_wire.ops import Op, Wire

log = logging.getLogger("autumn_wire")

#: The RPC routes autumn-sdk 1.2.0 and autumn-js 1.3.13 call (``POST /v1/<name>``).
RPC: dict[str, Op] = {
    "customers.get_or_create": ops.get_or_create,
    "customers.get": ops.get_customer,
    "customers.list": ops.list_customers,
    "customers.update": ops.update_customer,
    "customers.delete": ops.delete_customer,
    "balances.check": ops.check,
    "balances.track": ops.track,
    "balances.create": ops.create_balance,
    "balances.update": ops.update_balance,
    "balances.finalize": controls.finalize,
    "balances.delete": ops.delete_balance,
    "billing.attach": ops_billing.attach,
    "billing.preview_attach": ops_billing.preview_attach,
    "billing.preview_update": ops_billing.preview_update,
    "billing.update": ops_billing.update,
    "billing.open_customer_portal": ops_billing.open_customer_portal,
    "billing.setup_payment": ops_billing.setup_payment,
    "entities.create": ops.create_entity,
    "entities.get": ops.get_entity,
    "entities.list": ops.list_entities,
    "entities.delete": ops.delete_entity,
    "entities.update": controls.update_entity,
    "plans.list": ops.list_plans,
    "plans.get": ops.get_plan,
    "features.list": ops.list_features,
    "features.get": ops.get_feature,
    "events.list": ops.list_events,
    "events.aggregate": ops_events.aggregate,
}

#: Autumn's legacy REST paths that map onto the same operations.
LEGACY: dict[tuple[str, str], Op] = {
    ("POST", "check"): ops.check,
    ("POST", "entitled"): ops.check,
    ("POST", "track"): ops.track,
    ("POST", "events"): ops.track,
    ("POST", "attach"): ops_legacy.attach,
    ("POST", "cancel"): ops_legacy.cancel,
    ("POST", "customers"): ops_legacy.create_customer,
    ("GET", "customers"): ops_legacy.list_customers,
    ("POST", "customers/list"): ops.list_customers,
    ("POST", "events/list"): ops.list_events,
    ("POST", "events/aggregate"): ops_events.aggregate,
}

_JSON = "application/json"


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class WireApp:
    """The request pipeline shared by the API app and the frontend handler."""

    def __init__(
        self,
        billing: Autumn | AsyncAutumn,
        *,
        env: str = "sandbox",
        currency: str = "usd",
        max_body_bytes: int = 1 << 20,
        max_workers: int = 8,
    ) -> None:
        if env not in ("sandbox", "live"):
            raise ValueError(f"env must be 'sandbox' or 'live', got {env!r}")
        self.aio = (
            billing
            if isinstance(billing, AsyncAutumn)
            else AsyncAutumn(billing, max_workers=max_workers)
        )
        self.wire = Wire(self.aio.sync, env=env, currency=currency)
        self.env = env
        self.max_body_bytes = max_body_bytes

    def error(
        self, err: WireError, *, env: bool = True, headers: Mapping[str, str] | None = None
    ) -> Response:
        return Response(
            _dumps(err.body(self.env if env else None)),
            status_code=err.status,
            media_type=_JSON,
            headers=dict(headers or {}),
        )

    async def read_body(self, request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
        return parse_json(b"".join(chunks))

    def _too_large(self) -> WireError:
        return WireError(
            413, "request_too_large", f"request body is larger than {self.max_body_bytes} bytes"
        )

    async def guarded(self, fn: Any, *args: Any) -> None:
        """A store call of the request pipeline on the worker pool; its errors as Autumn's."""
        try:
            await self.aio.run(fn, *args)
        except AutumnError as exc:
            raise wire_error(exc) from None

    async def run(self, op: Op, data: dict[str, Any], idem: str | None) -> Any:
        return await self.aio.run(_call, op, self.wire, data, idem)


def _call(op: Op, wire: Wire, data: dict[str, Any], idem: str | None) -> Any:
    """One operation on a worker thread: library errors become Autumn errors here."""
    try:
        return op(wire, Body(data, ignored=ops.COSMETIC), idem)
    except AutumnError as exc:
        raise wire_error(exc) from None


def api(
    billing: Autumn | AsyncAutumn,
    *,
    secret_keys: Iterable[str] | None = None,
    env: str = "sandbox",
    currency: str = "usd",
    max_body_bytes: int = 1 << 20,
    max_workers: int = 8,
    legacy: bool = True,
) -> Starlette:
    """Autumn's ``/v1`` API over an engine, as a Starlette app (mount it at ``/v1``).

    ``secret_keys``: the accepted Bearer keys (default: ``AUTUMN_SECRET_KEY``, comma
    separated). ``env`` is echoed in responses; ``currency`` names preview amounts.
    """
    keys = Keys(secret_keys)
    core = WireApp(
        billing,
        env=env,
        currency=currency,
        max_body_bytes=max_body_bytes,
        max_workers=max_workers,
    )
    idempotency = StoreIdempotencyKeys(core.aio.sync)

    async def endpoint(request: Request) -> Response:
        route = request.path_params["route"]
        op = RPC.get(route) if request.method == "POST" else None
        if op is None and legacy:
            op = LEGACY.get((request.method, route))
        if op is None:
            return core.error(
                WireError(404, "not_found", f"{request.method} /v1/{route} not found"), env=False
            )
        try:
            keys.check(request.headers.get("authorization"))
        except WireError as err:
            return core.error(err, env=False)
        key = request.headers.get("idempotency-key")
        try:
            check_version(request.headers.get("x-api-version"))
            data = await core.read_body(request)
            if request.method == "GET":
                data = {**data, **_query(request)}
            if key is not None:
                await core.guarded(idempotency.hold, key)
        except WireError as err:
            return core.error(err)
        status = 200
        try:
            out = await core.run(op, data, key)
            return Response(_dumps(out), media_type=_JSON)
        except WireError as err:
            status = err.status
            return core.error(err, headers={"Retry-After": "1"} if err.status == 503 else None)
        except Exception:
            status = 500
            log.exception("autumn_wire: %s /v1/%s failed", request.method, route)
            return core.error(internal_error())
        finally:
            if key is not None:
                try:
                    await core.guarded(idempotency.settle, key, status)
                except WireError:  # the key stays held for its lifetime: a retry gets a 409
                    log.warning("autumn_wire: could not release idempotency key")

    app = Starlette(
        routes=[Route("/{route:path}", endpoint, methods=["GET", "POST", "PATCH", "DELETE"])]
    )
    app.state.autumn = core
    return app


def _query(request: Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in request.query_params.items():
        out[k] = int(v) if v.isdigit() and len(v) < 10 else v
    return out
