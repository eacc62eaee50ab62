"""Django integration: an app config, the engine built once from settings, a middleware and
gate decorators.

::

    INSTALLED_APPS = [..., "autumn_wire.django.AutumnConfig"]
    MIDDLEWARE = [..., "autumn_wire.django.AutumnMiddleware"]
    AUTUMN = {
        "CATALOG": BASE_DIR / "autumn.toml",
        "DATABASE_URL": "sqlite:///billing.db",
        "IDENTIFY": "myapp.billing.customer_id",   # request -> customer id (default: user pk)
    }

    @require_balance("messages", 1)   # tracked once the response has been sent
    def chat(request): ...

``billing()`` is the one engine of the process. A refusal is a 403 Autumn body; a library error
raised by a view is answered as the ``/v1`` API would (through the middleware).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar, cast

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string

import autumn_core
from autumn_core import Autumn, AutumnError, Catalog
from autumn_wire.body import number
from autumn_wire.gate import Denied, decide, error_body, no_customer

F = TypeVar("F", bound=Callable[..., HttpResponse])

_lock = threading.Lock()
_engine: Autumn | None = None


def _settings() -> dict[str, Any]:
    conf = getattr(settings, "AUTUMN", None)
    if not isinstance(conf, dict) or "CATALOG" not in conf:
        raise ImproperlyConfigured("settings.AUTUMN must be a dict with at least CATALOG")
    return conf


def billing() -> Autumn:
    """The process's engine, built on first use from ``settings.AUTUMN`` (then reused)."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                conf = _settings()
                catalog = Catalog.from_file(conf["CATALOG"])
                url = conf.get("DATABASE_URL", "sqlite:///autumn.db")
                _engine = autumn_core.open(str(url), catalog=catalog)
    return _engine


def reset() -> None:
    """Close and forget the engine (tests that change ``settings.AUTUMN``)."""
    global _engine
    with _lock:
        if _engine is not None:
            _engine.close()
        _engine = None


def _default_identify(request: HttpRequest) -> str | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return str(user.pk)


def customer_id(request: HttpRequest) -> str | None:
    """The signed-in customer: ``AUTUMN["IDENTIFY"]`` (a callable or its dotted path)."""
    identify: Any = _settings().get("IDENTIFY", _default_identify)
    if isinstance(identify, str):
        identify = import_string(identify)
    cid = identify(request)
    return None if cid is None else str(cid)


def _env() -> str:
    return str(_settings().get("ENV", "sandbox"))


def _refuse(exc: Exception) -> JsonResponse:
    status, body = error_body(exc, _env())
    return JsonResponse(body, status=status)


def _subject(request: HttpRequest) -> str:
    cid = customer_id(request)
    if cid is None:
        raise no_customer()
    return cid


def require_feature(feature_id: str) -> Callable[[F], F]:
    """View decorator: the signed-in customer has ``feature_id`` (else 403)."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def gated(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                decide(billing().check(_subject(request), feature_id), feature_id, None)
            except (Denied, AutumnError) as exc:
                return _refuse(exc)
            return view(request, *args, **kwargs)

        return cast(F, gated)

    return wrap


def require_balance(feature_id: str, amount: Any = 1, *, track: bool = True) -> Callable[[F], F]:
    """View decorator: at least ``amount`` is left (else 403); with ``track``, ``amount`` is
    tracked once the response has been sent (when the server closes it)."""
    value: Decimal = number("amount", amount)

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def gated(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            engine = billing()
            try:
                cid = _subject(request)
                decide(engine.check(cid, feature_id, required_balance=value), feature_id, value)
            except (Denied, AutumnError) as exc:
                return _refuse(exc)
            response = view(request, *args, **kwargs)
            if track and response.status_code < 400:
                # Django's own handler closes responses through this list after sending them
                # (it hangs ``request_finished`` there too); there is no public hook for it.
                response._resource_closers.append(
                    lambda: engine.track(cid, feature_id, value=value)
                )
            return response

        return cast(F, gated)

    return wrap


class AutumnMiddleware:
    """Sets ``request.autumn`` (the engine) and answers library errors with Autumn bodies."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.autumn = billing()
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Denied | AutumnError):
            return _refuse(exception)
        return None


class AutumnConfig(AppConfig):
    name = "autumn_wire.django"
    label = "autumn_wire"
    verbose_name = "Autumn billing"
    path = os.path.dirname(__file__)
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        _settings()  # a missing AUTUMN setting is reported at start-up, not on first request


__all__ = [
    "AutumnConfig",
    "AutumnMiddleware",
    "billing",
    "customer_id",
    "require_balance",
    "require_feature",
    "reset",
]
