from django.urls import path

from shop import views

urlpatterns = [
    path("signup/<str:user_id>", views.signup),
    path("chat", views.chat),
    path("sso", views.sso),
    path("upgrade", views.upgrade),
]
