"""The Customers page with 100,000 customers on SQLite: server time of the page and of a search,
next to the store's own ``customers.list`` of the same page size, measured in the same run.

Server time = the ASGI app handling one request in-process (routing, session cookie, the library
calls, the template), without a socket or an HTTP client. Target: the page <= 2x the list call.

    .venv/bin/python benchmarks/bench_dashboard.py [--customers 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))
from _harness import time_calls, write

from autumn_core import Autumn, Catalog, Feature, Item, Price, Product
from autumn_dashboard import dashboard
from autumn_sqlite import SqliteStore

PASSWORD = "bench"
SECRET = "bench-secret"


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages", name="Messages")],
        products=[
            Product(
                "free", name="Free", default=True, items=[Item.feature("messages", included=100)]
            ),
            Product("pro", name="Pro", price=Price(20), items=[Item.feature("messages", 1000)]),
        ],
    )


def populate(billing: Autumn, n: int) -> None:
    t0 = time.perf_counter()
    for i in range(n):
        if i % 1000 == 999:  # a pre-created customer (no id yet) now and then
            billing.customers.create(name=f"Lead {i:06}", email=f"lead{i:06}@example.com")
        else:
            billing.customers.create(
                f"cus_{i:06}", name=f"Customer {i:06}", email=f"user{i:06}@example.com"
            )
        if i % 10 == 0:
            billing.attach(f"cus_{i:06}", "pro")
        if i % 20_000 == 0:
            print(f"  {i:,} customers, {time.perf_counter() - t0:.0f}s", flush=True)


class Driver:
    """Calls the ASGI app directly with a signed-in session cookie."""

    def __init__(self, app: Any) -> None:
        self.app = app
        client = TestClient(app, follow_redirects=False)
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").text)
        assert token
        client.post("/signin", data={"csrf": token.group(1), "password": PASSWORD})
        self.cookie = f"autumn_dashboard={client.cookies['autumn_dashboard']}".encode()
        self.loop = asyncio.new_event_loop()

    def get(self, path: str, query: str = "") -> bytes:
        return self.loop.run_until_complete(self._get(path, query))

    def time(self, path: str, query: str, *, n: int, warmup: int = 50) -> dict[str, float]:
        """Per-request times, all in one running loop (as in a server: its worker threads stay)."""

        async def run() -> list[int]:
            for _ in range(warmup):
                await self._get(path, query)
            samples = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                await self._get(path, query)
                samples.append(time.perf_counter_ns() - t0)
            return samples

        samples = sorted(self.loop.run_until_complete(run()))
        return {
            "p50_us": samples[len(samples) // 2] / 1000,
            "p99_us": samples[int(len(samples) * 0.99)] / 1000,
            "mean_us": statistics.fmean(samples) / 1000,
            "n": n,
        }

    async def _get(self, path: str, query: str) -> bytes:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"bench"), (b"cookie", self.cookie)],
            "client": ("127.0.0.1", 1),
            "server": ("bench", 80),
        }
        status: list[int] = []
        body: list[bytes] = []

        sent: list[bool] = []

        async def receive() -> dict[str, Any]:
            if not sent:
                sent.append(True)
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # as a server: no disconnect until the response ends
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await self.app(scope, receive, send)
        assert status == [200], (path, query, status)
        return b"".join(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    n = args.customers
    with tempfile.TemporaryDirectory() as tmp:
        billing = Autumn(catalog(), store=SqliteStore(Path(tmp) / "bench.db"))
        print(f"populating {n:,} customers (SQLite file)...", flush=True)
        populate(billing, n)
        driver = Driver(dashboard(billing, PASSWORD, secret_key=SECRET, signin_delay=0))
        middle = f"cus_{n // 2:06}"
        page = driver.get("/customers", "limit=50")
        assert page.count(b"<tr>") == 51  # header + 50 rows
        rare = f"lead{n - 1:06}" if n % 1000 == 0 else "user000001@"
        hits = driver.get("/customers", f"q={rare}")
        assert rare.encode() in hits
        figures = {
            "customers": n,
            "list_50_first": time_calls(lambda: billing.customers.list(limit=50), n=300),
            "page_50_first": driver.time("/customers", "limit=50", n=300),
            "list_50_middle": time_calls(
                lambda: billing.customers.list(limit=50, starting_after=middle), n=300
            ),
            "page_50_middle": driver.time(
                "/customers", f"limit=50&after={_cursor(billing, middle)}", n=300
            ),
            # a term many customers match: the first 50 matches come early in the order
            "search_common": driver.time("/customers", "q=Customer+0&limit=50", n=100, warmup=10),
            # a term only the newest customer matches: the whole table is walked
            "search_rare": driver.time("/customers", f"q={rare}&limit=50", n=9, warmup=1),
        }
        billing.close()
    for key in ("first", "middle"):
        figures[f"ratio_page_to_list_{key}"] = round(
            figures[f"page_50_{key}"]["p50_us"] / figures[f"list_50_{key}"]["p50_us"], 2
        )
    figures["ratio_search_common_to_list"] = round(
        figures["search_common"]["p50_us"] / figures["list_50_first"]["p50_us"], 2
    )
    figures["ratio_search_rare_to_list"] = round(
        figures["search_rare"]["p50_us"] / figures["list_50_first"]["p50_us"], 2
    )
    figures["target"] = "page p50 <= 2x customers.list(limit=50) p50"
    path = write("dashboard", figures)
    for k, v in figures.items():
        print(f"{k:30} {v}")
    print(f"written to {path}")


def _cursor(billing: Autumn, customer_id: str) -> str:
    """The page cursor that starts after that customer: its store key."""
    from autumn_dashboard.listing import encode

    with billing.store.transaction(write=False) as tx:
        return encode(tx.customer_pk(customer_id))


if __name__ == "__main__":
    main()
