"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright):
the issue's whole operator scenario, on each store, with screenshots of each page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from autumn_core import Autumn, ByEmail, CustomerData, ManualClock
from autumn_dashboard import dashboard

from .conftest import PASSWORD, SCREENSHOTS, LiveServer


@pytest.fixture
def server(billing: Autumn) -> Iterator[LiveServer]:
    with LiveServer(dashboard(billing, PASSWORD, signin_delay=0.05)) as s:
        yield s


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    p = context.new_page()
    yield p
    context.close()


def shot(page: Page, name: str, billing: Autumn, *, full: bool = True) -> None:
    """Screenshots come from the SQLite run (one set, not one per store)."""
    if type(billing.store).__name__ == "SqliteStore":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full)


def sign_in(page: Page, password: str = PASSWORD) -> None:
    page.goto("/signin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.preview_then_more
def test_operator_scenario(page: Page, billing: Autumn, browser: Any, server: LiveServer) -> None:
    # A page opened without signing in is refused: it sends you to the sign-in page.
    page.goto("/customers")
    expect(page).to_have_url(re.compile(r"/signin$"))
    shot(page, "signin", billing)
    sign_in(page, "wrong password")
    expect(page.get_by_role("alert")).to_have_text("Wrong password.")
    sign_in(page)
    expect(page.get_by_role("heading", name="Customers")).to_be_visible()
    expect(page.get_by_text("No customers yet.")).to_be_visible()

    # Create a customer with no id and an email; the button waits for an id or an email.
    page.get_by_role("link", name="Create Customer").first.click()
    submit = page.get_by_role("button", name="Create Customer")
    page.get_by_label("Name").fill("BigCo")
    expect(submit).to_be_disabled()
    page.get_by_label("Email").fill("deal@bigco.com")
    expect(submit).to_be_enabled()
    shot(page, "create_customer", billing)
    submit.click()
    expect(page.get_by_role("heading", name="BigCo")).to_be_visible()
    expect(page.locator("dl.chips")).to_contain_text("PENDING")

    # It is listed as PENDING.
    page.get_by_role("link", name="Customers").first.click()
    row = page.locator("table.customers tbody tr", has_text="deal@bigco.com")
    expect(row).to_contain_text("PENDING")
    expect(row).to_contain_text("Free")  # the default product, attached on creation

    # Open it and edit its email.
    row.get_by_role("link", name="BigCo").click()
    page.get_by_role("link", name="Edit customer").click()
    page.get_by_label("Email").fill("cfo@bigco.com")
    page.get_by_role("button", name="Update Customer").click()
    expect(page.locator("#c-email")).to_have_text("cfo@bigco.com")

    # Grant a priced product for free: the preview shows nothing due.
    page.get_by_role("link", name="Attach Plan").click()
    page.locator("select[name=product]").select_option("pro")
    page.get_by_label("Grant for Free").check()
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#due-now")).to_have_text("$0.00")
    shot(page, "attach_preview", billing)
    page.get_by_role("button", name="Grant for Free").click()
    plans = page.locator("#plans")
    expect(plans.locator("tr", has_text="Pro")).to_contain_text("Granted for free")

    # The Python API sees it; the first call by id with that email claims the customer, who
    # holds the product with no invoice.
    pending = billing.customers.get(ByEmail("cfo@bigco.com"))
    assert pending.id is None and pending.has_product("pro")
    decision = billing.check("bigco", "sso", customer_data=CustomerData(email="cfo@bigco.com"))
    assert decision.allowed
    claimed = billing.customers.get("bigco")
    assert claimed.email == "cfo@bigco.com" and claimed.has_product("pro")
    assert billing.invoices.list("bigco") == []

    # The page follows the claimed customer by id.
    page.goto("/customer?id=bigco")
    expect(page.locator("#c-id")).to_have_text("bigco")
    messages = page.locator("tr.balance[data-feature='messages']")
    expect(messages.locator(".usage-text")).to_have_text("0 / 1,000")
    bar = messages.locator("svg.bar rect.fill")
    expect(bar).to_have_attribute("width", "0.0")

    # Set a balance and record usage: the bar and the chart move.
    assert page.locator("svg.chart rect").count() == 0
    form = page.locator("#set-balance")
    form.get_by_label("Feature").select_option("messages")
    form.get_by_label("Remaining").fill("400")
    form.get_by_role("button", name="Set Balance").click()
    expect(page.get_by_role("status")).to_have_text("Balance of messages set.")
    expect(messages.locator(".usage-text")).to_have_text("600 / 1,000")
    expect(bar).to_have_attribute("width", "60.0")
    form = page.locator("#record-usage")
    form.get_by_label("Feature").select_option("messages")
    form.get_by_label("Value", exact=True).fill("150")
    form.get_by_label("Properties").fill("source=dashboard")
    form.get_by_role("button", name="Record Usage").click()
    expect(messages.locator(".usage-text")).to_have_text("750 / 1,000")
    expect(bar).to_have_attribute("width", "75.0")
    expect(page.locator("svg.chart rect.s0")).to_have_count(1)
    expect(page.locator("table.events")).to_contain_text("source=dashboard")
    assert billing.customers.get("bigco").features["messages"].remaining == Decimal(250)

    # Grant a top-up with an expiry.
    form = page.locator("#grant-balance")
    form.get_by_label("Feature").select_option("words")
    form.get_by_label("Amount").fill("2500")
    form.get_by_label("Expires").fill("2025-12-31")
    form.get_by_role("button", name="Grant").click()
    expect(page.locator("tr.balance[data-feature='words'] .remaining")).to_have_text("2,500")
    shot(page, "customer", billing)

    # Cancel and uncancel a paid plan (it runs to its period end, so it can be uncanceled).
    billing.customers.create("acme", name="Acme")
    billing.attach("acme", "scale")
    page.goto("/customer?id=acme")
    scale_row = page.locator("#plans tr", has_text="Scale")
    expect(scale_row).to_contain_text("$200.00 / year")
    scale_row.get_by_role("button", name="Cancel").click()
    expect(scale_row.locator(".badge")).to_have_text("canceling")
    assert billing.customers.get("acme").products[0].canceled_at is not None
    scale_row.get_by_role("button", name="Uncancel").click()
    expect(scale_row.locator(".badge")).to_have_text("active")
    assert billing.customers.get("acme").products[0].canceled_at is None
    expect(page.locator("#invoices")).to_contain_text("$200.00")
    page.goto("/customer/attach/preview?id=acme&product=top_up&q_messages=1500")
    expect(page.locator("#due-now")).to_have_text("$15.00")
    shot(page, "attach_preview_paid", billing)
    billing.customers.delete("acme")
    page.goto("/customer?id=bigco")

    # An entity.
    form = page.locator("#create-entity")
    form.get_by_label("Name", exact=True).fill("Ann's seat")
    form.get_by_label("ID", exact=True).fill("seat-1")
    form.get_by_role("button", name="Create entity").click()
    expect(page.locator("#entities")).to_contain_text("seat-1")
    assert [e.id for e in billing.entities.list("bigco")] == ["seat-1"]

    # The Products page counts the customers on each product.
    page.get_by_role("link", name="Products").click()
    expect(page.locator("table.products tr", has_text="pro").locator("td.num")).to_have_text("1")
    shot(page, "products", billing)

    # A form posted without the CSRF token is refused and changes nothing.
    refused = page.request.post(
        f"{server.url}/customer/balance",
        form={"id": "bigco", "action": "set", "feature": "messages", "remaining": "0"},
    )
    assert refused.status == 403
    assert billing.customers.get("bigco").features["messages"].remaining == Decimal(250)

    # Another browser, not signed in: pages and actions are refused.
    stranger = browser.new_context(base_url=server.url)
    other = stranger.new_page()
    other.goto("/customer?id=bigco")
    expect(other).to_have_url(re.compile(r"/signin$"))
    assert "cfo@bigco.com" not in other.content()
    stranger.close()

    # Delete, behind a confirmation.
    page.goto("/customer?id=bigco")
    page.get_by_role("link", name="Delete customer").click()
    expect(page.get_by_role("heading", name="Delete customer")).to_be_visible()
    page.get_by_role("button", name="Delete customer").click()
    expect(page.get_by_role("status")).to_contain_text("deleted")
    assert billing.customers.list() == []


def test_script_name_is_inert(page: Page, billing: Autumn) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page)
    page.goto("/customers/new")
    name = "<script>window.pwned=1;alert('x')</script><img src=x onerror=alert(2)>"
    page.get_by_label("Name").fill(name)
    page.get_by_label("ID").fill("evil")
    page.get_by_role("button", name="Create Customer").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    page.goto("/customers")
    expect(page.locator("table.customers")).to_contain_text(name)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert dialogs == []


def test_search_and_page_through_300_customers(
    page: Page, billing: Autumn, clock: ManualClock
) -> None:
    for i in range(300):
        clock.advance(seconds=1)
        # pre-created customers (no id) end pages 1 and 2 of 100, and one near the top
        if i % 50 == 49 or i == 2:
            billing.customers.create(name=f"Lead {i:03}", email=f"lead{i:03}@example.com")
            continue
        billing.customers.create(f"cus_{i:03}", name=f"Person {i:03}", email=f"p{i:03}@ex.com")
        if i % 3 == 0:
            billing.attach(f"cus_{i:03}", "pro")  # a card-less trial: "trialing"
        elif i % 5 == 1:
            billing.attach(f"cus_{i:03}", "scale")
            if i % 4 == 0:
                billing.cancel(f"cus_{i:03}", "scale")  # "canceling"
    sign_in(page)
    seen: list[str] = []
    page.goto("/customers")
    page.get_by_label("Page size").select_option("100")
    expect(page).to_have_url(re.compile(r"limit=100"))
    while True:
        emails = page.locator("table.customers tbody tr td:nth-child(3)").all_inner_texts()
        seen.extend(emails)
        nxt = page.get_by_role("link", name="Next →")
        if nxt.count() == 0:
            break
        nxt.click()
    assert len(seen) == 300 and len(set(seen)) == 300
    assert seen[0] == "p000@ex.com" and seen[-1] == "lead299@example.com"
    assert seen[99] == "lead099@example.com" and seen[100] == "p100@ex.com"
    assert seen == [c.email for c in billing.customers.list(limit=1000)]
    shot(page, "customers_last_page", billing, full=False)
    # Previous goes back through the cursors.
    page.get_by_role("link", name="← Previous").click()
    expect(page.locator("table.customers tbody tr").first).to_contain_text("p100@ex.com")
    # Search: id, name or email, case-insensitive substring.
    page.get_by_label("Search").fill("LEAD 1")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("table.customers tbody tr")
    expect(rows).to_have_count(2)  # Lead 149, Lead 199
    expect(rows.first).to_contain_text("PENDING")
    page.get_by_label("Search").fill("cus_29")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(9)  # cus_290..cus_298 (299 is a pre-created lead)
    page.get_by_label("Search").fill("nobody-here")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No matching results found")).to_be_visible()
    page.get_by_label("Search").fill("")
    page.get_by_role("button", name="Search").click()
    page.get_by_label("Page size").select_option("50")
    expect(rows).to_have_count(50)
    shot(page, "customers", billing, full=False)


def test_attach_plan_offers_every_stored_version(
    browser: Any, billing: Autumn, clock: ManualClock
) -> None:
    # given pro at $20 held by a customer, then the catalog raises pro to $25 (version 2)
    import attrs

    from autumn_core import Catalog, Price

    billing.attach("early", "pro")
    clock.advance(days=1)
    old = billing.catalog
    raised = Catalog(
        features=old.features,
        products=[
            attrs.evolve(p, price=Price(25, interval="month")) if p.id == "pro" else p
            for p in old.products
        ],
    )
    engine = Autumn(raised, store=billing.store, clock=clock)
    billing.customers.create("late", name="Late")
    with LiveServer(dashboard(engine, PASSWORD, signin_delay=0.05)) as srv:
        context = browser.new_context(base_url=srv.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        page = context.new_page()
        sign_in(page)
        page.goto("/customer?id=late")
        page.get_by_role("link", name="Attach Plan").click()
        # when the operator picks pro's version 1 (the form lists both, the latest first)
        options = page.locator("select[name=product] option", has_text="Pro")
        expect(options).to_have_count(2)
        expect(options.nth(0)).to_contain_text("v2 — $25.00 / month")
        expect(options.nth(0)).to_contain_text("latest")
        expect(options.nth(1)).to_contain_text("v1 — $20.00 / month")
        page.locator("select[name=product]").select_option("pro@1")
        shot(page, "attach_form", billing)
        page.get_by_role("button", name="Preview").click()
        # then the preview is of version 1 at its price, and the attach gives version 1
        expect(page.get_by_role("heading", name="Attach Pro v1")).to_be_visible()
        expect(page.locator("tfoot")).to_contain_text("$20.00")
        page.get_by_role("button", name="Attach Plan").click()
        expect(page.locator("#plans tr", has_text="Pro")).to_be_visible()
        context.close()
    held = [p for p in engine.customers.get("late").products if p.id == "pro"]
    assert [(p.version, p.status) for p in held] == [(1, "trialing")]
    assert [p.version for p in engine.customers.get("early").products] == [1]
