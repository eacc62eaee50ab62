"""localstripe for the Gateway contract: the session server of ``tests/stripe``, reused here."""

from tests.stripe.conftest import localstripe, loopback_only, ls

__all__ = ["localstripe", "loopback_only", "ls"]
