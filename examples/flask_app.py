"""A Flask app billing with the embedded engine.

    flask --app examples.flask_app run

``POST /chat`` needs one "messages" left (tracked after the response), ``GET /sso`` needs the
"sso" feature. The signed-in user is the ``x-user-id`` header here; a real app reads its session.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, request

import autumn_core
from autumn_core import Catalog
from autumn_wire.flask import AutumnFlask

CATALOG = Catalog.from_file(Path(__file__).with_name("autumn.toml"))


def create_app(db_url: str | None = None) -> Flask:
    app = Flask(__name__)
    billing = autumn_core.open(db_url or os.environ.get("AUTUMN_DB", "memory://"), catalog=CATALOG)
    autumn = AutumnFlask(app, billing, identify=lambda: request.headers.get("x-user-id"))

    @app.post("/signup/<user_id>")
    def signup(user_id: str) -> dict[str, object]:
        customer = billing.customers.create(user_id, email=request.args.get("email"))
        return {"id": customer.id, "plans": [p.id for p in customer.products]}

    @app.post("/chat")
    @autumn.require_balance("messages", 1)
    def chat() -> dict[str, str]:
        return {"reply": "hello"}

    @app.get("/sso")
    @autumn.require_feature("sso")
    def sso() -> dict[str, str]:
        return {"sso": "configured"}

    @app.post("/upgrade")
    def upgrade() -> dict[str, str]:
        result = billing.attach(request.headers.get("x-user-id", ""), "pro")
        return {"scenario": result.scenario}

    return app


app = create_app()

if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "5000")))
