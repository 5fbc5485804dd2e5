from __future__ import annotations

from overrides import api
from treasury.urls import api_path

urlpatterns = [api_path("admin/override", api.OverrideView.as_view(), "admin-override")]
