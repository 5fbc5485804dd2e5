from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from treasury import api

handler404 = "treasury.errors.json_not_found"
handler500 = "treasury.errors.json_server_error"


def api_path(route: str, view: object, name: str) -> URLPattern:
    """`/api/<route>` with or without a trailing slash, as the seed writes its paths."""
    return re_path(rf"^api/{route}/?$", view, name=name)  # type: ignore[arg-type]


urlpatterns = [
    re_path(r"^admin/", admin.site.urls),
    api_path("schema", SpectacularAPIView.as_view(), "schema"),
    api_path("docs", SpectacularSwaggerView.as_view(url_name="schema"), "docs"),
    api_path("auth/signup", api.SignupView.as_view(), "auth-signup"),
    api_path("auth/login", api.LoginView.as_view(), "auth-login"),
    api_path("auth/refresh", api.RefreshView.as_view(), "auth-refresh"),
    api_path("auth/me", api.MeView.as_view(), "auth-me"),
    api_path("admin/health", api.HealthView.as_view(), "admin-health"),
    path("", include("ledger.urls")),
    path("", include("splits.urls")),
    path("", include("payouts.urls")),
    path("", include("disputes.urls")),
    path("", include("treasury.stripe.urls")),
    path("", include("reporting.urls")),
    path("", include("anomalies.urls")),
    path("me/", include("portal.urls")),
    path("", include("analytics.urls")),
    path("", include("overrides.urls")),
]
