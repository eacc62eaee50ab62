"""The dashboard over HTTP (Starlette's test client): sign-in, CSRF, headers, escaping, mounting
under a prefix, search paging, and ``autumn serve`` as a real process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from autumn_core import Autumn, ByEmail, ManualClock
from autumn_dashboard import dashboard
from autumn_dashboard.security import Throttle

from .conftest import PASSWORD

PAGES = [
    "/",
    "/customers",
    "/customers/new",
    "/customer?id=ann",
    "/customer/update?id=ann",
    "/customer/delete?id=ann",
    "/customer/attach?id=ann",
    "/customer/attach/preview?id=ann&product=pro",
    "/products",
]
#: Every state-changing form, with a body that would change something if accepted.
ACTIONS = [
    ("/customers/new", {"id": "mallory", "email": "m@x.com"}),
    ("/customer/update?id=ann", {"id": "ann", "name": "Hacked"}),
    ("/customer/delete?id=ann", {}),
    ("/customer/attach", {"id": "ann", "product": "pro", "free": "on"}),
    ("/customer/plan", {"id": "ann", "product": "free", "action": "cancel"}),
    ("/customer/balance", {"id": "ann", "feature": "messages", "action": "set", "remaining": "0"}),
    ("/customer/entities", {"id": "ann", "entity_id": "e1", "feature": "seats"}),
    ("/signout", {}),
]


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def signed_in(app: Any, prefix: str = "") -> tuple[TestClient, str]:
    client = TestClient(app, follow_redirects=False)
    token = _csrf(client.get(f"{prefix}/signin").text)
    r = client.post(f"{prefix}/signin", data={"csrf": token, "password": PASSWORD})
    assert r.status_code == 303
    return client, _csrf(client.get(f"{prefix}/customers").text)


def unchanged(billing: Autumn) -> None:
    ann = billing.customers.get("ann")
    assert ann.name == "Ann" and ann.features["messages"].remaining == Decimal(100)
    assert [p.id for p in ann.products] == ["free"] and ann.entities == []
    assert [c.id for c in billing.customers.list()] == ["ann"]


@pytest.fixture
def app(billing: Autumn) -> Any:
    billing.customers.create("ann", name="Ann", email="ann@example.com")
    return dashboard(billing, PASSWORD, signin_delay=0)


def test_nothing_without_signing_in(app: Any, billing: Autumn) -> None:
    client = TestClient(app, follow_redirects=False)
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].endswith("/signin"), path
        assert "ann@example.com" not in r.text
    token = _csrf(client.get("/signin").text)  # a real token, of a session not signed in
    for path, body in ACTIONS[:-1]:
        r = client.post(path, data={**body, "csrf": token})
        assert r.status_code == 401, path
    unchanged(billing)


def test_every_form_needs_the_csrf_token(app: Any, billing: Autumn) -> None:
    client, token = signed_in(app)
    for path, body in ACTIONS:
        assert client.post(path, data=body).status_code == 403, path
        assert client.post(path, data={**body, "csrf": token[:-2] + "xx"}).status_code == 403
    unchanged(billing)
    assert client.get("/customers").status_code == 200  # still signed in
    # and with the token, the same form works
    r = client.post("/customer/balance", data={**ACTIONS[5][1], "csrf": token})
    assert r.status_code == 303
    assert billing.customers.get("ann").features["messages"].remaining == Decimal(0)


def test_wrong_password_is_refused(app: Any) -> None:
    client = TestClient(app, follow_redirects=False)
    token = _csrf(client.get("/signin").text)
    r = client.post("/signin", data={"csrf": token, "password": "nope"})
    assert r.status_code == 401 and "Wrong password." in r.text
    assert client.get("/customers").status_code == 303


def test_failed_sign_ins_wait_longer_each_time() -> None:
    throttle = Throttle(0.5, max_delay=8)
    waits = [throttle.record_failure("10.0.0.1") for _ in range(6)]
    waits.append(throttle.record_failure("10.0.0.2"))  # another client is not slowed by it
    throttle.succeeded("10.0.0.1")
    waits.append(throttle.record_failure("10.0.0.1"))  # a success forgets the failures
    assert waits == [0.5, 1, 2, 4, 8, 8, 0.5, 0.5]


@pytest.mark.preview_then_more
def test_headers_cookie_and_no_inline_script(app: Any, billing: Autumn) -> None:
    billing.customers.create("x1", name='<script>alert("x")</script>', email="x@example.com")
    client, _ = signed_in(app)
    cookie = client.get("/signin").headers.get("set-cookie") or ""
    login = TestClient(app).get("/signin")
    set_cookie = login.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    del cookie
    for path in [*PAGES, "/customer?id=x1", "/customers?q=script"]:
        r = client.get(path, follow_redirects=True)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        # the only script is the packaged file; nothing inline, nothing from elsewhere
        scripts = re.findall(r"<script[^>]*>", r.text)
        assert scripts == [f'<script src="{r.url.scheme}://testserver/static/dashboard.js" defer>']
        assert "<script>alert" not in r.text
        assert "http" not in re.sub(r"(href|src|action)=\"http://testserver/", "", r.text).replace(
            "https://dashboard.stripe.com", ""
        ), path
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in client.get("/customer?id=x1").text


def test_works_under_a_mount_prefix(billing: Autumn) -> None:
    billing.customers.create("ann", name="Ann", email="ann@example.com")
    host = Starlette(routes=[Mount("/billing", dashboard(billing, PASSWORD, signin_delay=0))])
    client = TestClient(host, follow_redirects=False)
    assert client.get("/billing/customers").headers["location"].endswith("/billing/signin")
    client, token = signed_in(host, "/billing")
    page = client.get("/billing/customers").text
    links = re.findall(r'(?:href|action|src)="http://testserver(/[^"]*)"', page)
    assert links and all(link.startswith("/billing/") for link in links)
    assert client.get("/billing/static/dashboard.css").status_code == 200
    r = client.post("/billing/customers/new", data={"csrf": token, "email": "new@example.com"})
    assert (
        r.status_code == 303
        and "/billing/customer?email=new%40example.com" in r.headers["location"]
    )


def test_create_needs_an_id_or_an_email(app: Any, billing: Autumn) -> None:
    client, token = signed_in(app)
    r = client.post("/customers/new", data={"csrf": token, "name": "Nobody"})
    assert r.status_code == 422 and "Either an ID or an email is required." in r.text
    assert [c.id for c in billing.customers.list()] == ["ann"]


def test_search_pages_through_its_matches(app: Any, billing: Autumn) -> None:
    for i in range(120):
        billing.customers.create(f"match-{i:03}", name=f"Person {i}")
        billing.customers.create(f"other-{i:03}")
    client, _ = signed_in(app)
    seen: list[str] = []
    url: str | None = "/customers?q=MATCH&limit=50"
    while url:
        html = client.get(url).text
        seen += re.findall(r'class="mono">(match-\d+)<', html)
        nxt = re.search(r'href="http://testserver(/customers[^"]*)" rel="next"', html)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert seen == [f"match-{i:03}" for i in range(120)]


def test_generated_password_is_printed_once(
    billing: Autumn, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTUMN_DASHBOARD_PASSWORD", raising=False)
    app = dashboard(billing, signin_delay=0)
    printed = capsys.readouterr().err
    password = re.search(r"password: (\S+)", printed)
    assert password and printed.count("password:") == 1
    client = TestClient(app, follow_redirects=False)
    token = _csrf(client.get("/signin").text)
    r = client.post("/signin", data={"csrf": token, "password": password.group(1)})
    assert r.status_code == 303 and r.headers["location"].endswith("/customers")


def test_autumn_serve_runs_the_dashboard_on_loopback(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "AUTUMN_DASHBOARD_PASSWORD": PASSWORD}
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "autumn_cli.main", "serve", "--db", db, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        body = ""
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/signin") as r:
                    body = r.read().decode()
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        assert "Sign in" in body
        # bound to 127.0.0.1 only: listening sockets of this port are all on loopback
        listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
        local = [ln.split()[1] for ln in listening if ln.split()[3] == "0A"]
        ours = [a for a in local if int(a.split(":")[1], 16) == port]
        assert ours == ["0100007F:" + f"{port:04X}"]
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert f"http://127.0.0.1:{port}/" in out


def test_a_search_stops_at_its_scan_budget_and_continues(billing: Autumn) -> None:
    from autumn_dashboard.listing import search_page

    for i in range(250):
        billing.customers.create(f"c{i:03}", name="Needle" if i in (5, 240) else None)
    first = search_page(billing, "needle", 50, None, budget=100)
    assert [c.id for c in first.customers] == ["c005"]
    assert first.partial and first.scanned == 100 and first.next_cursor
    second = search_page(billing, "needle", 50, first.next_cursor, budget=100)
    assert second.customers == [] and second.partial and second.scanned == 100
    third = search_page(billing, "needle", 50, second.next_cursor, budget=100)
    assert [c.id for c in third.customers] == ["c240"]
    assert not third.partial and third.next_cursor is None and third.scanned == 50


def test_edit_renames_and_the_page_follows(app: Any, billing: Autumn) -> None:
    billing.attach("ann", "pro")
    client, token = signed_in(app)
    r = client.post(
        "/customer/update?id=ann",
        data={"csrf": token, "id": "ann-2", "name": "Ann B", "email": "ann@example.com"},
    )
    assert r.status_code == 303 and r.headers["location"].endswith("/customer?id=ann-2")
    renamed = billing.customers.get("ann-2")
    assert renamed.name == "Ann B" and renamed.has_product("pro")
    assert 'id="c-id">ann-2<' in client.get("/customer?id=ann-2").text
    assert client.get("/customer?id=ann").status_code == 404


def test_usage_chart_has_one_bar_per_day_and_feature(
    app: Any, billing: Autumn, clock: ManualClock
) -> None:
    # given events on three days of the last 30, two features on one of them
    start = clock.now()
    for days_ago, feature, value in [(20, "messages", 5), (3, "messages", 2), (3, "words", 7)]:
        clock.set(start - timedelta(days=days_ago))
        billing.track("ann", feature, value=value)
    clock.set(start)
    billing.track("ann", "words", value=1)
    client, _ = signed_in(app)
    month = client.get("/customer?id=ann&days=30").text
    week = client.get("/customer?id=ann&days=7").text
    bars = re.compile(r'<rect class="s(\d)" x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+">')
    assert len(bars.findall(month)) == 4
    assert len(bars.findall(week)) == 3  # the event of 20 days ago is out of the week
    assert "Showing" not in week and week.count("<td>words") == 2


def test_the_table_shows_statuses_as_the_api_reports_them_lazy_work_included(
    app: Any, billing: Autumn, clock: ManualClock
) -> None:
    """Given customers on a trial, a canceled plan and a pre-created one, some with lazy work
    due (the trial and the year ended since their last write), when the Customers page is
    shown, then every row's products and statuses are those ``customers.get`` reports."""
    from autumn_dashboard.pages import product_status

    # given
    billing.attach("ann", "pro")  # a card-less 14-day trial
    billing.customers.create("bob", name="Bob")
    billing.attach("bob", "scale")
    billing.cancel("bob", "scale")  # canceling at the end of its year
    billing.customers.create(name="Lead", email="lead@example.com")
    billing.customers.create("cat", name="Cat")
    billing.attach("cat", "pro")
    expected_before = {"ann": "trialing", "bob": "canceling", "cat": "trialing"}
    client, _ = signed_in(app)

    def shown() -> dict[str, list[str]]:
        html = client.get("/customers?limit=50").text
        rows = re.findall(r"<tr><td>.*?</tr>", html)
        out = {}
        for row in rows:
            ident = re.search(r'class="mono">([^<]+)<', row)
            key = ident.group(1) if ident else "PENDING"
            out[key] = re.findall(r'<span class="badge st-[a-z-]+">([^<]+) <em>([^<]+)</em>', row)
        return {k: [f"{n}:{s}" for n, s in v] for k, v in out.items()}

    def api() -> dict[str, list[str]]:
        out = {}
        for ref in ["ann", "bob", "cat"]:
            c = billing.customers.get(ref)
            out[ref] = [f"{p.name}:{product_status(p)}" for p in c.products]
        lead = billing.customers.get(ByEmail("lead@example.com"))
        out["PENDING"] = [f"{p.name}:{product_status(p)}" for p in lead.products]
        return out

    # when / then
    before = shown()
    assert before == api()
    assert {
        k: next(s.split(":")[1] for s in v if not s.startswith("Free"))
        for k, v in before.items()
        if k != "PENDING"
    } == expected_before
    clock.advance(days=400)  # every trial and the canceled year are over: lazy work is due
    after = shown()
    assert after == api()
    assert after != before
