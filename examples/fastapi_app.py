"""A FastAPI app billing with the embedded engine.

    AUTUMN_SECRET_KEY=am_sk_test_x uvicorn examples.fastapi_app:app

- ``POST /chat`` needs one "messages" left and tracks it after the response;
- ``GET /sso`` needs the "sso" feature (the "pro" plan);
- ``/v1/...`` is Autumn's API (autumn-sdk / autumn-js with ``server_url=`` this origin);
- ``/api/autumn/...`` serves autumn-js's React hooks for the signed-in user.

The signed-in user is the ``x-user-id`` header here; a real app reads its session.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import Depends, FastAPI, Request

import autumn_core
from autumn_core import Catalog, CheckResult
from autumn_wire import api, autumn_handler
from autumn_wire.fastapi import get_autumn, require_balance, require_feature, setup

CATALOG = Catalog.from_file(Path(__file__).with_name("autumn.toml"))
billing = autumn_core.open(os.environ.get("AUTUMN_DB", "memory://"), catalog=CATALOG)


def current_user(request: Request) -> str | None:
    return request.headers.get("x-user-id")


app = FastAPI(title="Autumn on FastAPI")
aio = setup(app, billing, identify=current_user)
app.mount("/v1", api(aio, secret_keys=[os.environ.get("AUTUMN_SECRET_KEY", "am_sk_test_example")]))
app.mount("/api/autumn", autumn_handler(aio, identify=current_user))


@app.post("/signup/{user_id}")
async def signup(user_id: str, email: str | None = None) -> dict[str, object]:
    customer = await aio.customers.create(user_id, email=email)
    return {"id": customer.id, "plans": [p.id for p in customer.products]}


@app.post("/chat")
async def chat(check: CheckResult = Depends(require_balance("messages", 1))) -> dict[str, object]:
    left = check.balance.remaining - 1 if check.balance is not None else None
    return {"reply": "hello", "messages_left": str(left)}


@app.get("/sso", dependencies=[Depends(require_feature("sso"))])
async def sso() -> dict[str, str]:
    return {"sso": "configured"}


@app.post("/upgrade")
async def upgrade(
    request: Request, engine: autumn_core.AsyncAutumn = Depends(get_autumn)
) -> dict[str, object]:
    user = current_user(request) or ""
    result = await engine.attach(user, "pro")
    return {"scenario": result.scenario, "trial_ends_at": str(result.trial_ends_at)}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
