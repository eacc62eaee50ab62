"""The pages and the actions behind their forms; every change goes through the library's calls."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL, FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from autumn_core import (
    Autumn,
    AutumnError,
    ByEmail,
    Customer,
    CustomerNotFound,
    InvalidRequest,
    Product,
)
from autumn_dashboard import describe, fmt, listing
from autumn_dashboard.charts import usage_chart
from autumn_dashboard.security import csrf_token

T = TypeVar("T")
USAGE_DAYS = (7, 30)
_EVENT_PAGE = 1000
#: Events drawn at most per chart; older ones beyond it are left out of the chart and table.
_EVENT_CAP = 20_000


def _text(form: FormData, name: str) -> str | None:
    """A trimmed form field; empty means not given."""
    value = form.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _ref(params: Any) -> str | ByEmail:
    """The customer a page or action is about: ``?id=`` or, before it has one, ``?email=``."""
    cid, email = params.get("id"), params.get("email")
    if cid:
        return str(cid)
    if email:
        return ByEmail(str(email))
    raise InvalidRequest("which customer? give id or email")


def _date(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(f"{field} must be a date (YYYY-MM-DD), got {value!r}") from None


def _properties(value: str | None) -> dict[str, str] | None:
    """``plan=pro, region=eu`` -> a dict."""
    if value is None:
        return None
    out: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"properties are key=value pairs, got {part.strip()!r}")
        out[key.strip()] = val.strip()
    return out


def title_of(c: Customer) -> str:
    return c.name or c.email or c.id or "?"


def product_status(p: Any) -> str:
    """The status shown: a live product with a cancellation pending is "canceling"."""
    return listing.display_status(str(p.status), p.canceled_at is not None)


def invoice_link(gateway_invoice_id: str | None) -> str | None:
    if gateway_invoice_id and gateway_invoice_id.startswith("in_"):
        return f"https://dashboard.stripe.com/invoices/{gateway_invoice_id}"
    return None


async def server_error(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("Something went wrong; the change was not made.", 500)


class Pages:
    def __init__(self, billing: Autumn, templates: Jinja2Templates) -> None:
        self.billing = billing
        self.templates = templates
        self._products = {p.id: p for p in billing.catalog.products}
        self._urls: dict[tuple[Any, ...], URL] = {}

    def url_for(self, request: Request, name: str, **params: Any) -> URL:
        """``request.url_for``, remembered per mount point and host (a page links the same
        few routes many times)."""
        key = (
            request.scope.get("root_path", ""),
            request.url.scheme,
            request.headers.get("host"),
            name,
            tuple(sorted(params.items())),
        )
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) > 512:  # the Host header is the client's: keep this bounded
                self._urls.clear()
            url = self._urls[key] = request.url_for(name, **params)
        return url

    # -- plumbing ---------------------------------------------------------------------------
    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """The library is synchronous; its calls run off the event loop."""
        return await run_in_threadpool(fn, *args, **kwargs)

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        # popped only when present: a pop marks the session changed (a new cookie is sent)
        flashes = request.session.pop("flash") if "flash" in request.session else []
        ctx = {
            "url_for": lambda name, **params: self.url_for(request, name, **params),
            "csrf": csrf_token(request),
            "flashes": flashes,
            "customer_url": lambda c, **kw: self.customer_url(request, c, **kw),
            "title_of": title_of,
            "product_status": product_status,
            "catalog": self.billing.catalog,
            "pct": describe.usage_percent,
            "price_of": lambda cp: describe.price_label(self._products.get(cp.id)),
            "price_of_product": describe.price_label,
            "item_label": lambda item: describe.item_label(item, self.billing.catalog),
            **context,
        }
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)

    def flash(self, request: Request, kind: str, text: str) -> None:
        request.session.setdefault("flash", []).append([kind, text])

    def customer_url(self, request: Request, c: Customer | str | ByEmail, **extra: Any) -> str:
        base = str(self.url_for(request, "customer"))
        if isinstance(c, Customer):
            c = listing.ref_of(c)
        key = {"email": c.email} if isinstance(c, ByEmail) else {"id": c}
        return f"{base}?{urlencode({**key, **extra})}"

    def back(self, request: Request, ref: str | ByEmail, anchor: str = "") -> Response:
        return RedirectResponse(str(self.customer_url(request, ref)) + anchor, 303)

    # -- Customers ----------------------------------------------------------------------------
    async def customers(self, request: Request) -> Response:
        q = (request.query_params.get("q") or "").strip()
        try:
            size = int(request.query_params.get("limit", "50"))
        except ValueError:
            size = 50
        if size not in listing.PAGE_SIZES:
            size = 50
        cursor = request.query_params.get("after") or None
        prev = request.query_params.getlist("prev")
        try:
            if q:
                page = await self.call(listing.search_page, self.billing, q, size, cursor)
            else:
                page = await self.call(listing.list_page, self.billing, size, cursor)
        except AutumnError as exc:
            self.flash(request, "error", str(exc))
            return RedirectResponse(request.url_for("customers"), 303)
        base = request.url_for("customers")
        common = [("limit", str(size)), *([("q", q)] if q else [])]
        next_url = prev_url = None
        # The cursor stack: ``prev`` holds the cursors of the pages before this one ("" = first).
        if page.next_cursor:
            stack = [("prev", p) for p in [*prev, cursor or ""]]
            next_url = _with_query(base, [*common, ("after", page.next_cursor), *stack])
        if cursor:
            back = [("after", prev[-1])] if prev and prev[-1] else []
            prev_url = _with_query(base, [*common, *back, *[("prev", p) for p in prev[:-1]]])
        rows = _rows_html(page.customers, str(self.url_for(request, "customer")))
        return self.render(
            request,
            "customers.html",
            {
                "page": page,
                "rows": rows,
                "q": q,
                "limit": size,
                "sizes": listing.PAGE_SIZES,
                "next_url": next_url,
                "prev_url": prev_url,
                "page_number": len(prev) + 1,
            },
        )

    async def create_customer(self, request: Request) -> Response:
        values: dict[str, str | None] = {"name": None, "id": None, "email": None}
        values["fingerprint"] = None
        error = None
        if request.method == "POST":
            form = await request.form()
            values = {k: _text(form, k) for k in ("name", "id", "email", "fingerprint")}
            if values["id"] is None and values["email"] is None:
                error = "Either an ID or an email is required."
            else:
                try:
                    c = await self.call(
                        self.billing.customers.create,
                        values["id"],
                        name=values["name"],
                        email=values["email"],
                        fingerprint=values["fingerprint"],
                    )
                except AutumnError as exc:
                    error = str(exc)
                else:
                    self.flash(request, "ok", "Customer created.")
                    return RedirectResponse(self.customer_url(request, c), 303)
        return self.render(
            request, "customer_new.html", {"values": values, "error": error}, 422 if error else 200
        )

    # -- Customer ---------------------------------------------------------------------------
    async def _customer_or_404(self, request: Request) -> Customer | Response:
        try:
            ref = _ref(request.query_params)
            return await self.call(self.billing.customers.get, ref)
        except (CustomerNotFound, InvalidRequest) as exc:
            return self.render(request, "error.html", {"message": str(exc)}, 404)

    async def customer(self, request: Request) -> Response:
        c = await self._customer_or_404(request)
        if isinstance(c, Response):
            return c
        ref = listing.ref_of(c)
        try:
            days = int(request.query_params.get("days", "7"))
        except ValueError:
            days = 7
        days = days if days in USAGE_DAYS else 7
        now = self.billing.clock.now()
        start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
        events = await self.call(self._events, ref, start)
        invoices = await self.call(self.billing.invoices.list, ref)
        granted = await self.call(listing.granted_free, self.billing, c)
        features = {f.id: f for f in self.billing.catalog.features}
        balances = [b for b in c.features.values() if b.type != "boolean"]
        flags = [b for b in c.features.values() if b.type == "boolean"]
        return self.render(
            request,
            "customer.html",
            {
                "c": c,
                "ref": ref,
                "ref_fields": _ref_fields(ref),
                "balances": balances,
                "flags": flags,
                "features": features,
                "metered": [f for f in self.billing.catalog.features if f.type != "boolean"],
                "allocated": [f for f in self.billing.catalog.features if f.type == "allocated"],
                "events": list(reversed(events))[:200],
                "event_count": len(events),
                "chart": usage_chart(events, now=now, days=days),
                "days": days,
                "usage_days": USAGE_DAYS,
                "invoices": invoices,
                "granted": granted,
                "invoice_link": invoice_link,
                "now": now,
                "currency": "usd",
            },
        )

    def _events(self, ref: str | ByEmail, start: datetime) -> list[Any]:
        out: list[Any] = []
        after = None
        while len(out) < _EVENT_CAP:
            batch = self.billing.events.list(
                ref, start=start, limit=_EVENT_PAGE, starting_after=after
            )
            out.extend(batch)
            if len(batch) < _EVENT_PAGE:
                break
            after = batch[-1].id
        return out

    async def update_customer(self, request: Request) -> Response:
        c = await self._customer_or_404(request)
        if isinstance(c, Response):
            return c
        values = {"name": c.name, "id": c.id, "email": c.email, "fingerprint": c.fingerprint}
        error = None
        if request.method == "POST":
            form = await request.form()
            values = {k: _text(form, k) for k in ("name", "id", "email", "fingerprint")}
            patch: dict[str, Any] = {
                "name": values["name"],
                "email": values["email"],
                "fingerprint": values["fingerprint"],
            }
            if values["id"] is not None and values["id"] != c.id:
                patch["new_id"] = values["id"]
            try:
                updated = await self.call(self.billing.customers.update, listing.ref_of(c), **patch)
            except AutumnError as exc:
                error = str(exc)
            else:
                self.flash(request, "ok", "Customer updated.")
                return RedirectResponse(self.customer_url(request, updated), 303)
        return self.render(
            request,
            "customer_edit.html",
            {
                "c": c,
                "values": values,
                "error": error,
                "ref_fields": _ref_fields(listing.ref_of(c)),
            },
            422 if error else 200,
        )

    async def delete_customer(self, request: Request) -> Response:
        c = await self._customer_or_404(request)
        if isinstance(c, Response):
            return c
        ref = listing.ref_of(c)
        if request.method == "POST":
            try:
                await self.call(self.billing.customers.delete, ref)
            except AutumnError as exc:
                self.flash(request, "error", str(exc))
                return self.back(request, ref)
            self.flash(request, "ok", f"Customer {title_of(c)} deleted.")
            return RedirectResponse(request.url_for("customers"), 303)
        return self.render(
            request, "customer_delete.html", {"c": c, "ref_fields": _ref_fields(ref)}
        )

    # -- Plans ------------------------------------------------------------------------------
    def _attach_args(self, params: Any, product: Product) -> dict[str, Any]:
        quantities = {}
        for item in product.items:
            if item.is_prepaid:
                raw = (params.get(f"q_{item.feature_id}") or "").strip()
                if raw:
                    quantities[item.feature_id] = raw
        entity = (params.get("entity") or "").strip() or None
        return {
            "entity_id": entity,
            "quantities": quantities or None,
            "free": params.get("free") == "on",
            "version": _version(params),
        }

    def _product(self, params: Any) -> Product:
        """The chosen plan: ``product`` is ``id`` (the latest) or ``id@version``."""
        pid = (params.get("product") or "").partition("@")[0]
        version = _version(params)
        for v in self.billing.products.versions():
            if v.product_id == pid and (v.version == version or (version is None and v.latest)):
                product: Product = v.product
                return product
        shown = pid if version is None else f"{pid} version {version}"
        raise InvalidRequest(f"choose a plan (got {shown!r})")

    async def attach_form(self, request: Request) -> Response:
        c = await self._customer_or_404(request)
        if isinstance(c, Response):
            return c
        stored = await self.call(self.billing.products.versions)
        order = {p.id: i for i, p in enumerate(self.billing.catalog.products)}
        versions = sorted(stored, key=lambda v: (order.get(v.product_id, 0), -v.version))
        return self.render(
            request,
            "attach.html",
            {"c": c, "ref_fields": _ref_fields(listing.ref_of(c)), "versions": versions},
        )

    async def attach_preview(self, request: Request) -> Response:
        c = await self._customer_or_404(request)
        if isinstance(c, Response):
            return c
        ref = listing.ref_of(c)
        params = request.query_params
        try:
            product = self._product(params)
            args = self._attach_args(params, product)
            preview = await self.call(self.billing.preview_attach, ref, product.id, **args)
        except AutumnError as exc:
            self.flash(request, "error", str(exc))
            return RedirectResponse(
                request.url_for("attach_form").include_query_params(**_ref_fields(ref)), 303
            )
        return self.render(
            request,
            "attach_preview.html",
            {
                "c": c,
                "ref_fields": _ref_fields(ref),
                "product": product,
                "args": args,
                "preview": preview,
                "currency": "usd",
                "feature_names": {f.id: f.name or f.id for f in self.billing.catalog.features},
            },
        )

    async def attach(self, request: Request) -> Response:
        form = await request.form()
        ref = _ref(form)
        try:
            product = self._product(form)
            args = self._attach_args(form, product)
            result = await self.call(self.billing.attach, ref, product.id, **args)
        except AutumnError as exc:
            self.flash(request, "error", str(exc))
            return self.back(request, ref, "#plans")
        if result.checkout_url:
            self.flash(request, "ok", f"Checkout created: {result.checkout_url}")
        elif args["free"]:
            self.flash(request, "ok", f"{product.name or product.id} granted for free.")
        else:
            self.flash(request, "ok", f"{product.name or product.id} attached.")
        return self.back(request, ref, "#plans")

    async def plan_action(self, request: Request) -> Response:
        form = await request.form()
        ref = _ref(form)
        pid = _text(form, "product") or ""
        entity = _text(form, "entity")
        try:
            if form.get("action") == "uncancel":
                await self.call(self.billing.uncancel, ref, pid, entity_id=entity)
                self.flash(request, "ok", f"{pid} will renew.")
            else:
                cp = await self.call(self.billing.cancel, ref, pid, entity_id=entity)
                when = cp.ends_at.strftime("%Y-%m-%d %H:%M UTC") if cp.ends_at else "now"
                self.flash(request, "ok", f"{pid} canceled (ends {when}).")
        except AutumnError as exc:
            self.flash(request, "error", str(exc))
        return self.back(request, ref, "#plans")

    # -- Features ---------------------------------------------------------------------------
    async def balance_action(self, request: Request) -> Response:
        form = await request.form()
        ref = _ref(form)
        action = form.get("action")
        feature = _text(form, "feature") or ""
        entity = _text(form, "entity")
        try:
            if action == "set":
                await self.call(
                    self.billing.balances.set,
                    ref,
                    feature,
                    remaining=_text(form, "remaining"),
                    entity_id=entity,
                )
                self.flash(request, "ok", f"Balance of {feature} set.")
            elif action == "grant":
                expires = _date(_text(form, "expires_at"), "Expires")
                await self.call(
                    self.billing.balances.grant,
                    ref,
                    feature,
                    _text(form, "amount"),
                    expires_at=expires,
                    entity_id=entity,
                )
                self.flash(request, "ok", f"Granted {feature}.")
            elif action == "track":
                r = await self.call(
                    self.billing.track,
                    ref,
                    feature,
                    value=_text(form, "value"),
                    entity_id=entity,
                    properties=_properties(_text(form, "properties")),
                )
                self.flash(request, "ok", f"Recorded {r.value} {feature}.")
            else:
                raise InvalidRequest(f"unknown action {action!r}")
        except AutumnError as exc:
            self.flash(request, "error", str(exc))
        return self.back(request, ref, "#features")

    # -- Entities ---------------------------------------------------------------------------
    async def create_entity(self, request: Request) -> Response:
        form = await request.form()
        ref = _ref(form)
        try:
            await self.call(
                self.billing.entities.create,
                ref,
                _text(form, "entity_id") or "",
                _text(form, "feature") or "",
                name=_text(form, "name"),
            )
            self.flash(request, "ok", "Entity created.")
        except AutumnError as exc:
            self.flash(request, "error", str(exc))
        return self.back(request, ref, "#entities")

    # -- Products ---------------------------------------------------------------------------
    async def products(self, request: Request) -> Response:
        counts = await self.call(listing.product_counts, self.billing)
        return self.render(request, "products.html", {"counts": counts, "currency": "usd"})


def _ref_fields(ref: str | ByEmail) -> dict[str, str]:
    """The hidden fields (or query parameters) naming a customer."""
    return {"email": ref.email} if isinstance(ref, ByEmail) else {"id": ref}


_NO_PRODUCTS = '<span class="muted">none</span>'
#: The badge class of each status shown (statuses are the library's own words, never input).
_STATUS_CLASS = {
    s: s.replace(" ", "-")
    for s in ("active", "trialing", "canceling", "past due", "scheduled", "expired")
}


def _rows_html(customers: list[listing.Row], base_url: str) -> Markup:
    """The Customers table body, the hottest markup of the dashboard: written here, not in the
    template (which took a third of the page's time). Every value goes through ``html.escape``
    (quotes included)."""
    out: list[str] = []
    for c in customers:
        # quote(safe="") leaves only [A-Za-z0-9_.~%-]: nothing to escape in the attribute
        key = (
            f"email={quote(c.email or '', safe='')}"
            if c.id is None
            else f"id={quote(c.id, safe='')}"
        )
        url = f"{base_url}?{key}"
        ident = (
            '<span class="badge pending">PENDING</span>'
            if c.id is None
            else f'<a href="{url}" class="mono">{html.escape(c.id)}</a>'
        )
        badges = "".join(
            f'<span class="badge st-{_STATUS_CLASS.get(h.status, "other")}">'
            f"{html.escape(h.name)} <em>{html.escape(h.status)}</em></span>"
            for h in c.products
        )
        out.append(
            f'<tr><td><a href="{url}">{html.escape(c.name or fmt.NONE)}</a></td><td>{ident}</td>'
            f"<td>{html.escape(c.email or fmt.NONE)}</td>"
            f"<td>{badges or _NO_PRODUCTS}</td>"
            f'<td class="nowrap">{fmt.when(c.created_at)}</td></tr>'
        )
    return Markup("\n".join(out))


def _version(params: Any) -> int | None:
    """The plan version asked for: ``version=N``, or the ``@N`` of ``product=id@N``."""
    raw = (params.get("version") or "").strip() or (params.get("product") or "").partition("@")[2]
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidRequest(f"not a plan version: {raw!r}")
    return int(raw)


def _with_query(base: URL, pairs: list[tuple[str, str]]) -> URL:
    return base.replace(query=urlencode(pairs))
