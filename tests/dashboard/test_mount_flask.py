"""The README's Flask recipe: the ASGI dashboard under /billing of a WSGI app, through a2wsgi."""

from __future__ import annotations

import re

from a2wsgi import ASGIMiddleware
from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from autumn_core import Autumn
from autumn_dashboard import dashboard

from .conftest import PASSWORD


def test_dashboard_under_a_flask_app(billing: Autumn) -> None:
    billing.customers.create("ann", email="ann@example.com")
    app = Flask(__name__)
    app.add_url_rule("/", "index", lambda: "my app")
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/billing": ASGIMiddleware(dashboard(billing, PASSWORD, signin_delay=0))}
    )
    client = app.test_client()
    assert client.get("/").text == "my app"
    assert client.get("/billing/customers").headers["location"].endswith("/billing/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/billing/signin").text)
    assert token
    r = client.post("/billing/signin", data={"csrf": token.group(1), "password": PASSWORD})
    assert r.headers["location"].endswith("/billing/customers")
    page = client.get("/billing/customers").text
    assert "ann@example.com" in page
    links = re.findall(r'(?:href|action|src)="http://localhost(/[^"]*)"', page)
    assert links and all(link.startswith("/billing/") for link in links)
    assert client.get("/billing/static/dashboard.css").status_code == 200
