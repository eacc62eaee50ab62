"""Engines of the differential test: one per store, built alike, with ids that match.

The engine names new records with random ids (``new_id``) and events with wall-clock-ordered ids
(``Unit.event_id``). Random ids would make two stores' equal states look different and would
order ties differently from run to run, so while the test runs both draw from one counter that
the driver rewinds to the same value before each store runs the same step: every store then
gets the same ids exactly when it makes the same records in the same order.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

from autumn_core.app import context, unit


class IdCounter:
    """Stands in for ``os`` / ``time`` in the two modules that mint ids."""

    def __init__(self) -> None:
        self.next = 0

    def rewind(self, step: int) -> None:
        self.next = step * 1_000_000

    def _take(self) -> int:
        self.next += 1
        return self.next

    def urandom(self, n: int) -> bytes:
        return self._take().to_bytes(n, "big")

    def getrandbits(self, k: int) -> int:
        return self._take() % (1 << k)

    def time_ns(self) -> int:
        return (1_700_000_000_000_000 + self._take()) * 1000

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name) if hasattr(os, name) else getattr(time, name)


@contextlib.contextmanager
def matching_ids() -> Iterator[IdCounter]:
    counter = IdCounter()
    with (
        mock.patch.object(context, "os", counter),
        mock.patch.object(unit, "getrandbits", counter.getrandbits),
        mock.patch.object(unit, "time", counter),
    ):
        yield counter
