"""autumn_wire: Autumn's HTTP API (as autumn-sdk and autumn-js speak it) over the embedded engine.

- ``api(billing, secret_keys=[...])``: the ``/v1`` RPC routes as a Starlette app.
- ``autumn_handler(billing, identify=...)``: the ``/api/autumn/<route>`` routes autumn-js's
  React hooks call on the app's own backend.
- ``serve_app(billing, ...)``: ``api`` mounted at ``/v1``, as ``python -m autumn_wire`` runs it.
- Framework integrations: ``autumn_wire.fastapi``, ``autumn_wire.django``, ``autumn_wire.flask``.
"""

from __future__ import annotations

from autumn_wire.app import api
from autumn_wire.errors import WireError, wire_error
from autumn_wire.frontend import autumn_handler
from autumn_wire.server import serve_app

__all__ = ["WireError", "api", "autumn_handler", "serve_app", "wire_error"]
