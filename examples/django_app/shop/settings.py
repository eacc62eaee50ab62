"""Settings of the example Django shop: the Autumn app, its middleware and ``AUTUMN``."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "shop.urls"
INSTALLED_APPS = ["autumn_wire.django.AutumnConfig"]
MIDDLEWARE = ["autumn_wire.django.AutumnMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
AUTUMN = {
    "CATALOG": BASE_DIR.parent.parent / "autumn.toml",
    "DATABASE_URL": os.environ.get("AUTUMN_DB", "memory://"),
    "IDENTIFY": "shop.views.current_user",
}
