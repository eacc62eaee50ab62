"""The one place server, connection, pool and decoding failures become the core's errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

import cattrs
import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from autumn_core.errors import AutumnError, StoreError, StoreTimeout, UniqueViolation
from autumn_postgres.pool import PoolExhausted
from autumn_postgres.wire import (
    DUPLICATE_STATEMENT,
    UNKNOWN_STATEMENT,
    ConnectionLost,
    ServerError,
    WireTimeout,
)

P = ParamSpec("P")
R = TypeVar("R")

#: SQLSTATEs after which the server has rolled the transaction back and a rerun may succeed
#: (26000: a prepared statement vanished because someone reset the session; it is prepared
#: again on the rerun).
RETRYABLE_SQLSTATES: Final = frozenset({"40001", "40P01", UNKNOWN_STATEMENT, DUPLICATE_STATEMENT})
#: SQLSTATEs of a bound reached on the server: statement timeout (57014), lock timeout (55P03).
#: Never re-run by the core (a rerun would multiply the wait).
TIMEOUT_SQLSTATES: Final = frozenset({"57014", "55P03"})


class RetryableStoreError(StoreError):
    """The server gave up on the transaction (serialization failure, deadlock, a session that
    lost its prepared statements, a connection lost before COMMIT was sent) and rolled it back;
    nothing happened and running the whole call again may succeed."""

    retryable: bool = True


def translate(exc: BaseException) -> StoreError:
    """Map a driver, wire, pool or decoding exception to the core's error, keeping its message."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, WireTimeout):
        return StoreTimeout(f"{exc}; the transaction was abandoned, nothing changed")
    if isinstance(exc, ConnectionLost):
        return RetryableStoreError(
            f"lost the connection to PostgreSQL before the transaction committed ({exc});"
            " nothing changed"
        )
    if isinstance(exc, PoolExhausted | PoolTimeout):
        return StoreTimeout(f"no PostgreSQL connection became available: {exc}")
    if isinstance(exc, PoolClosed):
        return StoreError("the store is closed")
    if isinstance(exc, ServerError | psycopg.Error):
        state = exc.sqlstate
        detail = exc.message if isinstance(exc, ServerError) else str(exc).strip()
        if state == "23505":
            return UniqueViolation(f"a uniqueness constraint refused the write ({detail})")
        if state in RETRYABLE_SQLSTATES:
            return RetryableStoreError(
                f"PostgreSQL rolled the transaction back ({state}: {detail}); nothing changed"
            )
        if state in TIMEOUT_SQLSTATES:
            return StoreTimeout(f"PostgreSQL gave up waiting ({state}: {detail}); nothing changed")
        if (
            state is None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        ) or (state is not None and state.startswith(("08", "57P"))):
            return StoreError(f"lost the connection to PostgreSQL ({detail or type(exc).__name__})")
        return StoreError(f"PostgreSQL failed ({state}: {detail})")
    if isinstance(exc, ValueError | TypeError | KeyError | cattrs.BaseValidationError):
        return StoreError(f"stored data could not be read back ({exc!r})")
    return StoreError(f"the store failed: {exc!r}")


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Every transaction method runs through ``translate``, so callers see only core errors."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AutumnError:
            raise
        except (
            ServerError,
            ConnectionLost,
            psycopg.Error,
            ValueError,
            TypeError,
            KeyError,
            cattrs.BaseValidationError,
        ) as exc:
            raise translate(exc) from exc

    return wrapper


__all__ = [
    "RETRYABLE_SQLSTATES",
    "TIMEOUT_SQLSTATES",
    "RetryableStoreError",
    "translate",
    "translated",
]
