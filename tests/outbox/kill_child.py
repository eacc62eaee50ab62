"""A process that commits changes (and one that rolls back), then starts delivering their
events to a receiver that never answers, and waits to be SIGKILLed (test_webhook_kill.py).

Usage: ``python -m tests.outbox.kill_child <store url> <receiver url> <clock iso>``.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime

from autumn_core import ManualClock, PaymentFailed, open
from autumn_memory import MemoryGateway

from .conftest import catalog

SECRET = "whsec_kill"


def main() -> None:
    url, receiver, at = sys.argv[1:4]
    gateway = MemoryGateway()
    billing = open(
        url, catalog=catalog(), gateway=gateway, clock=ManualClock(datetime.fromisoformat(at))
    )
    billing.webhooks.add_endpoint(receiver, secret=SECRET, name="app", timeout=60)
    billing.customers.create("ann")
    billing.attach("ann", "pro")
    billing.customers.create("bob")
    gateway.decline_next()
    with contextlib.suppress(PaymentFailed):
        billing.attach("bob", "premium")  # declined: rolled back, must never be announced
    print("committed", flush=True)
    billing.webhooks.deliver()  # the receiver holds the first request until we are killed
    print("delivery finished without being killed", flush=True)


if __name__ == "__main__":
    main()
