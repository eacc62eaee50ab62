"""Flask integration: an extension and gate decorators.

::

    autumn = AutumnFlask(app, billing, identify=lambda: session.get("user_id"))

    @app.post("/chat")
    @autumn.require_balance("messages", 1)   # tracked once the response has been sent
    def chat(): ...

    @app.get("/sso")
    @autumn.require_feature("sso")
    def sso(): ...

A refusal is a 403 Autumn body; a library error raised by a view is answered as the ``/v1``
API would. ``autumn.billing`` (or ``current_app.extensions["autumn"].billing``) is the engine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, jsonify, make_response

from autumn_core import Autumn, AutumnError
from autumn_wire.body import number
from autumn_wire.gate import Denied, decide, error_body, no_customer

F = TypeVar("F", bound=Callable[..., Any])


class AutumnFlask:
    """The engine for a Flask app (``init_app`` for the application-factory pattern)."""

    def __init__(
        self,
        app: Flask | None = None,
        billing: Autumn | None = None,
        *,
        identify: Callable[[], str | None] | None = None,
        env: str = "sandbox",
    ) -> None:
        self.billing = billing
        self.identify = identify
        self.env = env
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        billing: Autumn | None = None,
        identify: Callable[[], str | None] | None = None,
    ) -> None:
        self.billing = billing or self.billing
        self.identify = identify or self.identify
        if self.billing is None or self.identify is None:
            raise ValueError("AutumnFlask needs billing= and identify=")
        app.extensions["autumn"] = self

        def on_error(exc: Exception) -> tuple[Response, int]:
            status, body = error_body(exc, self.env)
            return jsonify(body), status

        app.register_error_handler(Denied, on_error)
        app.register_error_handler(AutumnError, on_error)

    @staticmethod
    def current() -> AutumnFlask:
        ext = current_app.extensions.get("autumn")
        if not isinstance(ext, AutumnFlask):
            raise RuntimeError("AutumnFlask is not set up on this app")
        return ext

    def _engine(self) -> tuple[Autumn, str]:
        assert self.billing is not None and self.identify is not None
        cid = self.identify()
        if cid is None:
            raise no_customer()
        return self.billing, cid

    def require_feature(self, feature_id: str) -> Callable[[F], F]:
        def wrap(view: F) -> F:
            @functools.wraps(view)
            def gated(*args: Any, **kwargs: Any) -> Any:
                billing, cid = self._engine()
                decide(billing.check(cid, feature_id), feature_id, None)
                return view(*args, **kwargs)

            return cast(F, gated)

        return wrap

    def require_balance(
        self, feature_id: str, amount: Any = 1, *, track: bool = True
    ) -> Callable[[F], F]:
        value: Decimal = number("amount", amount)

        def wrap(view: F) -> F:
            @functools.wraps(view)
            def gated(*args: Any, **kwargs: Any) -> Any:
                billing, cid = self._engine()
                decide(billing.check(cid, feature_id, required_balance=value), feature_id, value)
                response = make_response(view(*args, **kwargs))
                if track and response.status_code < 400:
                    # runs when the server closes the response, after it was sent
                    response.call_on_close(lambda: billing.track(cid, feature_id, value=value))
                return response

            return cast(F, gated)

        return wrap


__all__ = ["AutumnFlask", "Denied"]
