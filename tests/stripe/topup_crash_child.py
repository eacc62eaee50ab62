"""An auto top-up in a child process that SIGKILLs itself at one step (test_topup_crash.py).

Usage: ``python -m tests.stripe.topup_crash_child <db> <api_base> <step> <clock iso>`` from the
repository root, ``step`` one of ``before_charge`` (the operation record is committed, Stripe
was not called), ``after_charge`` (Stripe has charged, nothing local) or ``before_commit`` (the
top-up's transaction is complete and about to commit). The crossing ``track`` itself commits
before the top-up starts.
"""

from __future__ import annotations

import sys
from datetime import datetime

from autumn_core import Autumn, ManualClock
from autumn_sqlite import SqliteStore
from tests.outbox.test_topups import topup_catalog

from .crash_child import KillBeforeCommit, gateway


def main() -> None:
    db, api_base, step, at = sys.argv[1:5]
    gw = gateway(api_base, step)
    store = KillBeforeCommit(SqliteStore(db), gw)
    clock = ManualClock(datetime.fromisoformat(at))
    billing = Autumn(topup_catalog(), store=store, gateway=gw, clock=clock)  # type: ignore[arg-type]
    billing.track("c1", "credits", value=4600)
    print("track and top-up finished without being killed", flush=True)


if __name__ == "__main__":
    main()
