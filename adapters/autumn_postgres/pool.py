"""A small connection pool: connections opened on demand, in the caller's thread, so that a
failure to connect reaches the caller at once with its cause (no background threads retrying
and logging, nothing to break across ``fork``), and a connection is reused only when it came
back clean.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


class PoolExhausted(Exception):
    """Every connection stayed in use for the whole timeout."""


class Pool:
    """At most ``max_size`` connections to ``conninfo``; ``getconn`` waits up to ``timeout``
    seconds for one to be free, then raises ``PoolExhausted``; connecting raises psycopg's
    ``OperationalError`` (bounded by the ``connect_timeout`` of ``kwargs``)."""

    def __init__(
        self, conninfo: str, *, max_size: int, timeout: float, kwargs: dict[str, Any]
    ) -> None:
        self.conninfo = conninfo
        self._kwargs = kwargs
        self._timeout = timeout
        self._idle: deque[Conn] = deque()
        self._lock = threading.Lock()
        #: Free slots, and the callers waiting for one, first come first served (a busy thread
        #: looping on the store must not starve another caller).
        self._free = max_size
        self._waiters: deque[threading.Event] = deque()
        self._closed = False

    def getconn(self) -> Conn:
        if self._closed:
            raise psycopg.OperationalError("the pool is closed")
        self._take_slot()
        try:
            while True:
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
                if conn is None:
                    return psycopg.connect(self.conninfo, **self._kwargs)
                if not conn.closed:
                    return conn
        except BaseException:
            self._give_slot()
            raise

    def _take_slot(self) -> None:
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            turn = threading.Event()
            self._waiters.append(turn)
        if turn.wait(self._timeout):
            return
        with self._lock:
            if turn.is_set():  # handed over just as the wait ended
                return
            self._waiters.remove(turn)
        raise PoolExhausted(
            f"all connections stayed in use for {self._timeout:g} s (max_size reached)"
        )

    def _give_slot(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()  # the slot passes straight to the next caller
            else:
                self._free += 1

    def putconn(self, conn: Conn, *, reusable: bool = True) -> None:
        """Give a connection back: kept for reuse only if ``reusable`` and open."""
        try:
            if reusable and not conn.closed and not self._closed:
                with self._lock:
                    self._idle.append(conn)
                return
            _close(conn)
        finally:
            self._give_slot()

    def discard_idle(self) -> None:
        """Close every idle connection (after one was found dead, e.g. a server restart)."""
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for conn in idle:
            _close(conn)

    def close(self) -> None:
        self._closed = True
        self.discard_idle()


def _close(conn: Conn) -> None:
    with contextlib.suppress(Exception):  # a dead connection may fail to close; it is gone
        conn.close()


__all__ = ["Pool", "PoolExhausted"]
