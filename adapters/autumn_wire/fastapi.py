"""FastAPI integration: gates as dependencies, usage tracked after the response.

::

    from autumn_wire.fastapi import setup, require_feature, require_balance

    app = FastAPI()
    setup(app, billing, identify=lambda request: request.headers.get("x-user-id"))

    @app.get("/sso", dependencies=[Depends(require_feature("sso"))])
    async def sso() -> dict[str, str]: ...

    @app.post("/chat")
    async def chat(check: CheckResult = Depends(require_balance("messages", 1))) -> ...:
        ...  # "messages" is tracked by 1 once the response has been sent

A refusal is a 403 with an Autumn body ``{"message", "code", "env"}``; a library error raised
by a view is answered the same way as the ``/v1`` API would (``customer_not_found`` 404, ...).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse

from autumn_core import AsyncAutumn, Autumn, AutumnError, CheckResult
from autumn_wire.body import number
from autumn_wire.gate import Denied, decide, error_body, no_customer

Identify = Callable[[Request], "str | Awaitable[str | None] | None"]


class _State:
    def __init__(self, aio: AsyncAutumn, identify: Identify, env: str) -> None:
        self.aio = aio
        self.identify = identify
        self.env = env


def setup(
    app: FastAPI,
    billing: Autumn | AsyncAutumn,
    *,
    identify: Identify,
    env: str = "sandbox",
    max_workers: int = 8,
) -> AsyncAutumn:
    """Attach the engine to ``app`` (``app.state.autumn``) and answer refusals and library
    errors with Autumn bodies. ``identify(request)`` (sync or async) names the customer."""
    aio = (
        billing
        if isinstance(billing, AsyncAutumn)
        else AsyncAutumn(billing, max_workers=max_workers)
    )
    app.state.autumn = _State(aio, identify, env)

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        status, body = error_body(exc, env)
        return JSONResponse(body, status_code=status)

    app.add_exception_handler(Denied, on_error)
    app.add_exception_handler(AutumnError, on_error)
    return aio


def _state(request: Request) -> _State:
    state = getattr(request.app.state, "autumn", None)
    if not isinstance(state, _State):
        raise RuntimeError("call autumn_wire.fastapi.setup(app, billing, identify=...) first")
    return state


def get_autumn(request: Request) -> AsyncAutumn:
    """Dependency: the app's ``AsyncAutumn``."""
    return _state(request).aio


async def _customer(state: _State, request: Request) -> str:
    got = state.identify(request)
    cid = await got if inspect.isawaitable(got) else got
    if cid is None:
        raise no_customer()
    return cid


def require_feature(feature_id: str) -> Callable[[Request], Awaitable[CheckResult]]:
    """Dependency: the signed-in customer has ``feature_id`` (else 403)."""

    async def dependency(request: Request) -> CheckResult:
        state = _state(request)
        result = await state.aio.check(await _customer(state, request), feature_id)
        decide(result, feature_id, None)
        return result

    return dependency


def require_balance(
    feature_id: str, amount: Any = 1, *, track: bool = True
) -> Callable[[Request, BackgroundTasks], Awaitable[CheckResult]]:
    """Dependency: at least ``amount`` of ``feature_id`` is left (else 403); with ``track``,
    ``amount`` is tracked after the response has been sent."""
    value: Decimal = number("amount", amount)

    async def dependency(request: Request, background: BackgroundTasks) -> CheckResult:
        state = _state(request)
        cid = await _customer(state, request)
        result = await state.aio.check(cid, feature_id, required_balance=value)
        decide(result, feature_id, value)
        if track:
            background.add_task(state.aio.track, cid, feature_id, value=value)
        return result

    return dependency


__all__ = ["Denied", "get_autumn", "require_balance", "require_feature", "setup"]
