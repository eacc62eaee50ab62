"""``autumn_handler(billing, identify=...)``: the routes autumn-js's React hooks call on the
app's own backend (``POST /api/autumn/<route>``), answered in-process.

autumn-js's own backend handler forwards those calls to Autumn through its SDK, which speaks
camelCase to the browser; this handler does the same translation around the same operations
as the ``/v1`` API. The customer is never taken from the browser: ``identify(request)`` names
it (``customerId``/``customerData`` and the other protected fields in a body are dropped, as
autumn-js does).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from autumn_core import AsyncAutumn, Autumn
from autumn_wire import ops, ops_billing
from autumn_wire.app import WireApp, _dumps
from autumn_wire.errors import WireError, internal_error
from autumn_wire.ops import Op

Identity = Mapping[str, Any] | str | None
Identify = Callable[[Request], Identity | Awaitable[Identity]]

#: route -> (operation, needs a signed-in customer)
ROUTES: dict[str, tuple[Op, bool]] = {
    "getOrCreateCustomer": (ops.get_or_create, True),
    "getEntity": (ops.get_entity, True),
    "attach": (ops_billing.attach, True),
    "previewAttach": (ops_billing.preview_attach, True),
    "updateSubscription": (ops_billing.update, True),
    "openCustomerPortal": (ops_billing.open_customer_portal, True),
    "setupPayment": (ops_billing.setup_payment, True),
    "listPlans": (ops.list_plans, False),
    "listEvents": (ops.list_events, True),
}
_PROTECTED = {"customerId", "customerData", "name", "email", "stripeId", "customer_id"}
#: Objects whose keys are ids or user data, not field names: their keys are kept as they are.
_RECORDS = {"balances", "flags", "metadata", "properties"}
_OPAQUE = {"metadata", "properties"}
_CAMEL = re.compile(r"_([a-z0-9])")
_SNAKE = re.compile(r"(?<=[a-z0-9])([A-Z])")


def to_camel(value: Any, parent: str | None = None) -> Any:
    if isinstance(value, dict):
        if parent in _OPAQUE:
            return value
        if parent in _RECORDS:
            return {k: to_camel(v) for k, v in value.items()}
        return {_CAMEL.sub(lambda m: m[1].upper(), k): to_camel(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [to_camel(v, parent) for v in value]
    return value


def to_snake(value: Any, parent: str | None = None) -> Any:
    if isinstance(value, dict):
        if parent in _OPAQUE:
            return value
        out = {}
        for k, v in value.items():
            key = _SNAKE.sub(lambda m: "_" + m[1].lower(), k)
            out[key] = to_snake(v, key)
        return out
    if isinstance(value, list):
        return [to_snake(v, parent) for v in value]
    return value


def _identity(raw: Identity) -> tuple[str | None, dict[str, Any]]:
    if raw is None:
        return None, {}
    if isinstance(raw, str):
        return raw, {}
    cid = raw.get("customerId", raw.get("customer_id"))
    data = raw.get("customerData", raw.get("customer_data")) or {}
    return (cid if isinstance(cid, str) else None), dict(data)


def autumn_handler(
    billing: Autumn | AsyncAutumn,
    *,
    identify: Identify,
    max_body_bytes: int = 1 << 20,
    max_workers: int = 8,
) -> Starlette:
    """The ``/api/autumn`` routes as a Starlette app (mount it at ``/api/autumn``).

    ``identify(request)`` (sync or async) returns the signed-in customer: an id, or a mapping
    ``{"customerId": ..., "customerData": {"name": ..., "email": ...}}``, or ``None``.
    """
    core = WireApp(billing, max_body_bytes=max_body_bytes, max_workers=max_workers)

    def fail(err: WireError) -> Response:
        body = {"message": err.message, "code": err.code, "statusCode": err.status}
        return Response(_dumps(body), status_code=err.status, media_type="application/json")

    async def endpoint(request: Request) -> Response:
        route = request.path_params["route"]
        entry = ROUTES.get(route)
        if entry is None:
            return fail(WireError(404, "not_found", "Not found"))
        op, needs_customer = entry
        try:
            raw_body = await core.read_body(request)
            got = identify(request)
            cid, data = _identity(await got if inspect.isawaitable(got) else got)
            quiet = raw_body.get("errorOnNotFound") is False
            if route == "getOrCreateCustomer" and cid is None and quiet:
                return Response(status_code=204)
            if needs_customer and cid is None:
                raise WireError(
                    401, "no_customer_id", "customerId returned from identify function is None"
                )
            body = to_snake({k: v for k, v in raw_body.items() if k not in _PROTECTED})
            body.pop("error_on_not_found", None)
            if cid is not None:
                body["customer_id"] = cid
            if route == "getOrCreateCustomer":
                body.pop("metadata", None)
                for k in ("name", "email", "fingerprint", "metadata"):
                    if data.get(k) is not None:
                        body[k] = data[k]
            out = await core.run(op, body, None)
            return Response(_dumps(to_camel(out)), media_type="application/json")
        except WireError as err:
            return fail(err)
        except Exception:
            return fail(internal_error())

    app = Starlette(routes=[Route("/{route}", endpoint, methods=["POST"])])
    app.state.autumn = core
    return app
