"""What every ``/v1`` request passes before its operation: the secret key, the API version,
the body size, and the ``Idempotency-Key`` registry."""

from __future__ import annotations

import hmac
import os
import re
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from autumn_core import Autumn, InvalidRequest
from autumn_core.errors import UniqueViolation
from autumn_core.model import IdempotencyRecord
from autumn_wire.errors import WireError

#: Autumn's versions from which the 2.x response shapes are served (the SDKs send 2.4/2.5).
SUPPORTED_VERSIONS = ("2.0", "2.1", "2.2", "2.3", "2.4", "2.5")
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")


class Keys:
    """The accepted secret keys, compared in constant time and never shown."""

    def __init__(self, secret_keys: Iterable[str] | None) -> None:
        given = list(secret_keys or ())
        if not given:
            env = os.environ.get("AUTUMN_SECRET_KEY", "")
            given = [k.strip() for k in env.split(",") if k.strip()]
        for k in given:
            if not isinstance(k, str) or not k.strip():
                raise InvalidRequest("secret keys must be non-empty strings")
        if not given:
            raise InvalidRequest(
                "the API needs at least one secret key (secret_keys= or AUTUMN_SECRET_KEY)"
            )
        self._keys = [k.encode() for k in given]

    def __repr__(self) -> str:
        return f"Keys(<{len(self._keys)} hidden>)"

    def check(self, authorization: str | None) -> None:
        if not authorization:
            raise WireError(401, "no_secret_key", "Secret key not found in Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise WireError(
                401, "invalid_request", "Authorization header must be 'Bearer <secret key>'"
            )
        given = token.strip().encode()
        ok = False
        for key in self._keys:  # every key is compared: the time does not tell which matched
            ok |= hmac.compare_digest(given, key)
        if not ok:
            raise WireError(401, "invalid_secret_key", "Invalid secret key")


def check_version(header: str | None) -> None:
    """No header: the newest shapes. A known 2.x version: accepted. Anything else: 400."""
    if header is None:
        return
    m = _VERSION.match(header.strip())
    if m is None or f"{int(m[1])}.{int(m[2])}" not in SUPPORTED_VERSIONS:
        shown = header[:40]
        raise WireError(
            400,
            "invalid_api_version",
            f"Invalid API version {shown!r}: this server speaks {', '.join(SUPPORTED_VERSIONS)}",
        )


#: The operation name the API's ``Idempotency-Key`` records are stored under (one key space
#: for the whole store, as Autumn's is per organisation).
WIRE_OPERATION = "wire.idempotency_key"
_TTL = timedelta(hours=24)
#: A released key is rewritten as created at this instant: expired under any lifetime.
_RELEASED = datetime(1970, 1, 1, tzinfo=UTC)


def _conflict(key: str) -> WireError:
    return WireError(
        409,
        "duplicate_idempotency_key",
        f"Another request with idempotency key {key} has already been received",
    )


def _check_key(key: str) -> None:
    if len(key) > 255 or not key.strip():
        raise WireError(400, "invalid_inputs", "Idempotency-Key must be 1-255 characters")


class StoreIdempotencyKeys:
    """Autumn's ``Idempotency-Key`` registry, kept in the engine's store: every process (and
    host) serving one store shares it. A key is an idempotency record of the store (the
    library's own table, its 24 h lifetime and its uniqueness): ``hold`` inserts it or
    answers 409 while a live record holds it; ``settle`` after a failure (>= 400, not 409)
    rewrites it as long expired, so a retry goes through. The first response is never
    replayed (Autumn does not)."""

    def __init__(self, billing: Autumn) -> None:
        self._billing = billing

    def hold(self, key: str) -> None:
        _check_key(key)
        now = self._billing.clock.now()
        try:
            with self._billing.store.transaction() as tx:
                tx.put_idempotency(self._record(key, now), expired=now - _TTL)
        except UniqueViolation:
            raise _conflict(key) from None

    def settle(self, key: str, status: int) -> None:
        if status < 400 or status == 409:
            return
        now = self._billing.clock.now()
        with self._billing.store.transaction() as tx:
            tx.put_idempotency(self._record(key, _RELEASED), expired=now + _TTL)

    @staticmethod
    def _record(key: str, at: datetime) -> IdempotencyRecord:
        return IdempotencyRecord(WIRE_OPERATION, "", key, "", {}, at)


class IdempotencyKeys:
    """Autumn's ``Idempotency-Key`` in this process only: a key seen in the last 24 h (or in
    flight) is a 409 (for an app that wants no store writes for it; ``api`` uses
    ``StoreIdempotencyKeys``).

    A key is held from the start of its request; it is released when that request fails
    with any status of 400 or more except 409, so a retry after a failure goes through. The
    first response is never replayed. Keys are held per API app, in memory; the engine's own
    idempotency (track and attach pass the key down) makes the same key a conflict across
    processes sharing a store.
    """

    def __init__(self, ttl_seconds: float = 24 * 3600, max_keys: int = 100_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_keys
        self._held: dict[str, float] = {}
        self._lock = threading.Lock()

    def hold(self, key: str) -> None:
        if len(key) > 255 or not key.strip():
            raise WireError(400, "invalid_inputs", "Idempotency-Key must be 1-255 characters")
        now = time.monotonic()
        with self._lock:
            expires = self._held.get(key)
            if expires is not None and expires > now:
                raise WireError(
                    409,
                    "duplicate_idempotency_key",
                    f"Another request with idempotency key {key} has already been received",
                )
            if len(self._held) >= self._max:
                self._held = {k: t for k, t in self._held.items() if t > now}
                if len(self._held) >= self._max:
                    raise WireError(503, "service_unavailable", "too many idempotency keys held")
            self._held[key] = now + self._ttl

    def settle(self, key: str, status: int) -> None:
        if status >= 400 and status != 409:
            with self._lock:
                self._held.pop(key, None)
