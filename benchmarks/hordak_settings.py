"""Settings for django-hordak, the established Django double-entry app, in a database of its
own (`bench_hordak` on the same PostgreSQL). Benchmarks only: hordak never enters the app's
INSTALLED_APPS. benchmarks/run.py passes the connection in BENCH_HORDAK_* variables."""

from __future__ import annotations

import os

SECRET_KEY = "benchmarks-only"  # noqa: S105 - no request is ever served
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "mptt",
    "djmoney",
    "hordak",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_HORDAK_NAME", "bench_hordak"),
        "HOST": os.environ.get("BENCH_HORDAK_HOST", ""),
        "PORT": os.environ.get("BENCH_HORDAK_PORT", ""),
        "USER": os.environ.get("BENCH_HORDAK_USER", "postgres"),
        "PASSWORD": os.environ.get("BENCH_HORDAK_PASSWORD", ""),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DEFAULT_CURRENCY = "USD"
CURRENCIES = ["USD"]
HORDAK_DECIMAL_PLACES = 2
