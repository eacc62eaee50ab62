"""A paid attach through StripeGateway on localstripe, beside the bare Stripe SDK calls it needs.

Both sides run in the same process against the same localstripe server on loopback (started
here the way tests/stripe/conftest.py does), alternating per customer so server drift hits
both equally. Each new customer gets a card from a token made beforehand (untimed) and
attached by one timed call on both sides.

- library: ``Autumn(..., gateway=StripeGateway.for_localstripe(...)).attach(cid, "pro")`` for
  a new customer (auto-created): the Stripe customer, its card (``attach_payment_method``), the
  subscription whose first invoice collects $20 (the plan lookup is cached; the card and the
  "no subscription yet" of a customer it just created are known to the gateway, so neither a
  customer retrieve nor a subscription list is sent), the pending operation record, the commit.
- bare SDK: ``customers.create``, ``payment_sources.create``, ``plans.retrieve``,
  ``subscriptions.create`` — the Stripe work that attach cannot avoid.

Overhead = (library p50 - bare p50) / bare p50. Target: under 20%.
Run: .venv/bin/python benchmarks/bench_stripe.py [N]  (default 60 attaches per store)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import stripe

sys.path.insert(0, str(Path(__file__).parent))

from _harness import write

from autumn_core import Autumn, Catalog, Feature, Item, Price, Product
from autumn_memory import MemoryStore
from autumn_sqlite import SqliteStore
from autumn_stripe import StripeGateway

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "stripe" / "localstripe_server.py"
API_KEY = "sk_test_bench"
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


def start_localstripe() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(SERVER)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"localstripe did not start: {line!r}")
    base = f"http://127.0.0.1:{int(line.split()[1])}"
    session = requests.Session()
    session.trust_env = False
    deadline = time.monotonic() + 20
    while True:
        try:
            session.get(base + "/v1/customers", auth=(API_KEY, ""), timeout=1)
            return proc, base
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def client(base: str) -> stripe.StripeClient:
    session = requests.Session()
    session.trust_env = False
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": base},
        max_network_retries=0,
        http_client=stripe.RequestsClient(session=session),
    )


def catalog() -> Catalog:
    return Catalog(
        features=[Feature.metered("messages")],
        products=[
            Product("pro", price=Price(20), items=[Item.feature("messages", included=500)]),
        ],
    )


class BenchGateway(StripeGateway):
    """Gives each new Stripe customer the next pre-made card token.

    Attached with ``attach_payment_method`` (one ``payment_sources.create``, as on the bare
    side), as an application collecting cards with Stripe Elements would: the gateway then
    knows the customer can pay without asking Stripe again.
    """

    tokens: list[str]

    def create_customer(self, **kwargs: Any) -> str:
        gid = super().create_customer(**kwargs)
        self.attach_payment_method(gid, self.tokens.pop())
        return gid


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def run(store_name: str, base: str, n: int) -> dict[str, Any]:
    sdk = client(base)
    gw = BenchGateway.for_localstripe(client(base))
    assert isinstance(gw, BenchGateway)
    gw.tokens = [str(sdk.v1.tokens.create({"card": CARD}).id) for _ in range(n + 2)]
    bare_tokens = [str(sdk.v1.tokens.create({"card": CARD}).id) for _ in range(n + 2)]
    tmp = tempfile.TemporaryDirectory()
    store: Any = MemoryStore() if store_name == "memory" else SqliteStore(Path(tmp.name) / "b.db")
    billing = Autumn(catalog(), store=store, gateway=gw)
    # warm-up (untimed): the plan and product exist, connections are open
    billing.attach(f"warm-{store_name}", "pro", customer_data=None)
    plan_id = next(iter(gw._known_plans))  # the plan the library made for "pro"

    def bare(i: int) -> None:
        cus = sdk.v1.customers.create(
            {"email": f"bare{i}@example.com", "metadata": {"autumn_customer_id": f"bare{i}"}}
        )
        sdk.v1.customers.payment_sources.create(cus.id, {"source": bare_tokens.pop()})
        sdk.v1.plans.retrieve(plan_id)
        sdk.v1.subscriptions.create({"customer": cus.id, "items": [{"plan": plan_id}]})

    lib: list[float] = []
    raw: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        result = billing.attach(f"{store_name}-c{i}", "pro")
        lib.append(time.perf_counter() - t0)
        assert result.invoice is not None and result.invoice.status == "paid"
        t0 = time.perf_counter()
        bare(i)
        raw.append(time.perf_counter() - t0)
    billing.close()
    tmp.cleanup()
    lib_p50, raw_p50 = p50(lib) * 1000, p50(raw) * 1000
    return {
        "store": store_name,
        "attaches": n,
        "library_p50_ms": round(lib_p50, 2),
        "bare_sdk_p50_ms": round(raw_p50, 2),
        "overhead_pct": round((lib_p50 - raw_p50) / raw_p50 * 100, 1),
        "target_overhead_pct": 20,
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    proc, base = start_localstripe()
    try:
        rows = [run("memory", base, n), run("sqlite", base, n)]
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    print(f"{'store':8} {'n':>4} {'library p50':>12} {'bare SDK p50':>13} {'overhead':>9}")
    for r in rows:
        print(
            f"{r['store']:8} {r['attaches']:>4} {r['library_p50_ms']:>9.2f} ms "
            f"{r['bare_sdk_p50_ms']:>10.2f} ms {r['overhead_pct']:>8.1f}%"
        )
    path = write("stripe", {"paid_attach": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
