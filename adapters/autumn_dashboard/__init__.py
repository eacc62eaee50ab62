"""The billing dashboard: an ASGI app over an ``Autumn`` engine (Starlette + Jinja2).

``dashboard(billing, password=None)`` returns an app to mount anywhere; ``autumn serve`` runs it
on its own. See README.md in this package.
"""

from autumn_dashboard.app import PASSWORD_ENV, dashboard

__all__ = ["PASSWORD_ENV", "dashboard"]
