"""Views of the example shop: gated by the Autumn decorators, the engine from the middleware."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from autumn_wire.django import billing, require_balance, require_feature


def current_user(request: HttpRequest) -> str | None:
    """The signed-in customer (a header here; a real shop uses ``request.user``)."""
    return request.headers.get("x-user-id")


@csrf_exempt
def signup(request: HttpRequest, user_id: str) -> JsonResponse:
    customer = billing().customers.create(user_id, email=request.GET.get("email"))
    return JsonResponse({"id": customer.id, "plans": [p.id for p in customer.products]})


@csrf_exempt
@require_balance("messages", 1)
def chat(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"reply": "hello"})


@require_feature("sso")
def sso(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sso": "configured"})


@csrf_exempt
def upgrade(request: HttpRequest) -> JsonResponse:
    result = request.autumn.attach(current_user(request), "pro")  # type: ignore[attr-defined]
    return JsonResponse({"scenario": result.scenario})
