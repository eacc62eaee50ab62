"""The one place ``sqlite3`` exceptions become the core's errors."""

from __future__ import annotations

import sqlite3
from typing import Final

import cattrs

from autumn_core.errors import StoreError, UniqueViolation

_BUSY_CODES: Final = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_UNIQUE_NAMES: Final = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def translate(exc: BaseException) -> StoreError:
    """Map a driver (or decoding) exception to the core's error, keeping its message.

    ``UniqueViolation`` for a unique or primary-key constraint, ``StoreError`` for everything
    else; a busy database is marked ``retryable`` (nothing happened, trying again may work).
    """
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError):
        name = getattr(exc, "sqlite_errorname", "")
        if name in _UNIQUE_NAMES or "UNIQUE constraint" in str(exc):
            return UniqueViolation(f"a uniqueness constraint refused the write ({exc})")
        return StoreError(f"an integrity constraint refused the write ({exc})")
    if isinstance(exc, sqlite3.Error):
        if is_busy(exc):
            err = StoreError(f"the SQLite database is locked by another writer ({exc})")
            err.retryable = True
            return err
        return StoreError(f"SQLite failed: {exc}")
    if isinstance(exc, ValueError | TypeError | KeyError | cattrs.BaseValidationError):
        return StoreError(f"stored data could not be read back ({exc!r})")
    return StoreError(f"the store failed: {exc!r}")


__all__ = ["is_busy", "translate"]
