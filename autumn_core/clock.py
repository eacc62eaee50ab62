"""Clocks: the only place the core reads the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from threading import Lock
from typing import Protocol

from autumn_core.errors import InvalidRequest


class Clock(Protocol):
    """The port every use of "now" goes through."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to: tests, demos and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime(2025, 1, 1, tzinfo=UTC)
        self._now = _aware(start)
        self._lock = Lock()

    def now(self) -> datetime:
        return self._now

    def advance(self, **timedelta_kwargs: float) -> datetime:
        with self._lock:
            self._now = self._now + timedelta(**timedelta_kwargs)
            return self._now

    def set(self, dt: datetime) -> datetime:
        with self._lock:
            self._now = _aware(dt)
            return self._now


def _aware(dt: datetime) -> datetime:
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidRequest(f"clock time must be a timezone-aware datetime, got {dt!r}")
    return dt.astimezone(UTC)
