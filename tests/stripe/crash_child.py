"""A paid attach in a child process that SIGKILLs itself at one step (test_crash.py).

Usage: ``python -m tests.stripe.crash_child <db> <api_base> <step>`` from the repository root,
``step`` one of ``after_customer`` (the Stripe customer exists, nothing local),
``before_charge`` (the pending operation record is committed, Stripe was not called),
``after_charge`` (Stripe has charged, nothing local) or ``before_commit`` (the attach's
transaction is complete and about to commit).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
import stripe

from autumn_core import Autumn
from autumn_sqlite import SqliteStore

from .helpers import CardOnFile, catalog

API_KEY = "sk_test_crash"


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class Killing(CardOnFile):
    def __init__(self, *args: Any, step: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step = step
        self.charged = False

    def create_customer(self, **kwargs: Any) -> str:
        gid = super().create_customer(**kwargs)
        if self.step == "after_customer":
            die()
        return gid

    def charge(self, request: Any) -> Any:
        if self.step == "before_charge":
            die()  # the pending record is committed; Stripe never hears of the charge
        outcome = super().charge(request)
        self.charged = True
        if self.step == "after_charge":
            die()
        return outcome


class KillBeforeCommit:
    """Wraps the store: the write transaction that follows a charge dies instead of committing."""

    def __init__(self, store: SqliteStore, gateway: Killing) -> None:
        self.store = store
        self.gateway = gateway
        self.capabilities = store.capabilities

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        with self.store.transaction(write=write) as tx:
            yield tx
            if write and self.gateway.charged and self.gateway.step == "before_commit":
                die()

    def close(self) -> None:
        self.store.close()


def client(api_base: str) -> stripe.StripeClient:
    session = requests.Session()
    session.trust_env = False
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": api_base},
        max_network_retries=0,
        http_client=stripe.RequestsClient(session=session),
    )


def gateway(api_base: str, step: str = "none") -> Killing:
    return Killing(
        client(api_base),
        step=step,
        max_network_retries=0,
        send_proration_behavior=False,
        finalize_invoices=False,
        one_off="payment_intent",
    )


def main() -> None:
    db, api_base, step = sys.argv[1:4]
    gw = gateway(api_base, step)
    store = KillBeforeCommit(SqliteStore(db), gw)
    billing = Autumn(catalog(), store=store, gateway=gw)
    billing.attach("c1", "pro", idempotency_key="attach-1")
    print("attach finished without being killed", flush=True)


if __name__ == "__main__":
    main()
