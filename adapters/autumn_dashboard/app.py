"""The dashboard ASGI app: routes, sign-in and the wiring of the pages."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from autumn_core import Autumn, AutumnError, InvalidRequest
from autumn_dashboard import fmt, pages
from autumn_dashboard.security import (
    SecurityHeaders,
    Throttle,
    csrf_ok,
    csrf_token,
    password_matches,
    signed_in,
)

HERE = Path(__file__).parent
PASSWORD_ENV = "AUTUMN_DASHBOARD_PASSWORD"

Handler = Callable[[Request], Awaitable[Response]]


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is text: a customer named <script> stays text
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(number=fmt.number, money=fmt.money, when=fmt.when, day=fmt.day)
    return Jinja2Templates(env=env)


def resolve_password(password: str | None) -> str:
    """The given password, else ``AUTUMN_DASHBOARD_PASSWORD``, else a new one printed once."""
    if password:
        return password
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    generated = secrets.token_urlsafe(12)
    print(
        f"autumn dashboard password: {generated}  (set {PASSWORD_ENV} to choose one)",
        file=sys.stderr,
        flush=True,
    )
    return generated


def dashboard(
    billing: Autumn,
    password: str | None = None,
    *,
    secret_key: str | None = None,
    signin_delay: float = 0.5,
    https_only: bool = False,
) -> ASGIApp:
    """The billing dashboard as an ASGI app, to mount anywhere (``app.mount("/billing", ...)``).

    ``password`` (else ``AUTUMN_DASHBOARD_PASSWORD``, else a generated one printed once) signs
    in. ``secret_key`` signs the session cookie; by default a random one, so restarting signs
    everyone out. ``https_only`` marks the cookie Secure (set it behind HTTPS).
    """
    if not isinstance(billing, Autumn):
        raise InvalidRequest(f"dashboard() takes an Autumn engine, got {billing!r}")
    expected = resolve_password(password)
    throttle = Throttle(signin_delay)
    ui = pages.Pages(billing, _templates())

    def guarded(handler: Handler) -> Handler:
        """Signed-in sessions only; every POST carries the session's CSRF token."""

        async def run(request: Request) -> Response:
            if request.method == "POST":
                form = await request.form()
                if not csrf_ok(request, form.get("csrf")):
                    return PlainTextResponse("Refused: missing or invalid CSRF token.", 403)
            if not signed_in(request):
                if request.method == "POST":
                    return PlainTextResponse("Refused: sign in first.", 401)
                return RedirectResponse(request.url_for("signin"), 303)
            try:
                return await handler(request)
            except AutumnError as exc:  # a bad link or form: one clear line, never a 500
                return PlainTextResponse(f"Refused: {exc}", 400)

        return run

    async def signin(request: Request) -> Response:
        error = None
        if request.method == "POST":
            form = await request.form()
            client = request.client.host if request.client else "?"
            if not csrf_ok(request, form.get("csrf")):
                return PlainTextResponse("Refused: missing or invalid CSRF token.", 403)
            if password_matches(expected, form.get("password")):
                throttle.succeeded(client)
                request.session.clear()  # a fresh session (and CSRF token) after sign-in
                request.session["signed_in"] = True
                csrf_token(request)
                return RedirectResponse(request.url_for("customers"), 303)
            await throttle.failed(client)
            error = "Wrong password."
        return ui.render(request, "signin.html", {"error": error}, 401 if error else 200)

    async def signout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse(request.url_for("signin"), 303)

    async def home(request: Request) -> Response:
        return RedirectResponse(request.url_for("customers"), 303)

    def route(path: str, handler: Handler, name: str, methods: tuple[str, ...] = ("GET",)) -> Route:
        return Route(path, guarded(handler), name=name, methods=list(methods))

    routes: list[Any] = [
        Route("/signin", signin, name="signin", methods=["GET", "POST"]),
        route("/signout", signout, "signout", ("POST",)),
        route("/", home, "home"),
        route("/customers", ui.customers, "customers"),
        route("/customers/new", ui.create_customer, "create_customer", ("GET", "POST")),
        route("/customer", ui.customer, "customer"),
        route("/customer/update", ui.update_customer, "update_customer", ("GET", "POST")),
        route("/customer/delete", ui.delete_customer, "delete_customer", ("GET", "POST")),
        route("/customer/attach", ui.attach_form, "attach_form"),
        route("/customer/attach/preview", ui.attach_preview, "attach_preview"),
        route("/customer/attach", ui.attach, "attach", ("POST",)),
        route("/customer/plan", ui.plan_action, "plan_action", ("POST",)),
        route("/customer/balance", ui.balance_action, "balance_action", ("POST",)),
        route("/customer/entities", ui.create_entity, "create_entity", ("POST",)),
        route("/products", ui.products, "products"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=secret_key or secrets.token_urlsafe(32),
                session_cookie="autumn_dashboard",
                same_site="strict",
                https_only=https_only,
                max_age=12 * 3600,
            ),
        ],
        exception_handlers={Exception: pages.server_error},
    )
    return app
