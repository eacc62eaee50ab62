"""autumn_sqlite: the embedded default store, on the standard library's ``sqlite3``.

``SqliteStore("billing.db")`` or, through ``autumn_core.open``, one of the URLs
``sqlite:///relative.db``, ``sqlite:////abs/path.db`` and ``sqlite://:memory:``.
"""

from __future__ import annotations

from typing import Any

from autumn_core.errors import InvalidRequest
from autumn_sqlite.store import SqliteStore

_SCHEME = "sqlite://"


def path_from_url(url: str) -> str:
    """The filesystem path (or ``":memory:"``) a ``sqlite://`` URL names.

    ``sqlite:///billing.db`` is relative to the working directory, ``sqlite:////var/x.db`` is
    absolute (the SQLAlchemy convention), and ``sqlite://:memory:`` / ``sqlite:///:memory:`` is a
    private in-memory database.
    """
    if not isinstance(url, str) or not url.startswith(_SCHEME):
        raise InvalidRequest(f"not a sqlite URL: {url!r} (expected sqlite:///path.db)")
    rest = url[len(_SCHEME) :]
    if "?" in rest or "#" in rest:
        raise InvalidRequest(
            f"sqlite URLs take no query or fragment; pass keywords instead: {url!r}"
        )
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/") or rest == "/":
        raise InvalidRequest(
            f"malformed sqlite URL {url!r}: use sqlite:///relative.db, sqlite:////abs/path.db"
            " or sqlite://:memory:"
        )
    return rest[1:]


def store_from_url(url: str, **kwargs: Any) -> SqliteStore:
    """Entry point for ``autumn_core.open("sqlite:///...")`` (group ``autumn_core.stores``).

    Keywords are passed to ``SqliteStore`` (``synchronous``, ``lock_timeout``, ``cache_size``).
    """
    allowed = {"synchronous", "lock_timeout", "cache_size"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown SqliteStore options: {', '.join(unknown)}")
    return SqliteStore(path_from_url(url), **kwargs)


__all__ = ["SqliteStore", "path_from_url", "store_from_url"]
