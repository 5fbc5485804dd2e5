from __future__ import annotations

from payouts import api
from treasury.urls import api_path

urlpatterns = [
    api_path("payouts/initiate", api.InitiateView.as_view(), "payouts-initiate"),
    api_path("payouts/status", api.StatusView.as_view(), "payouts-status"),
    api_path("payouts/available", api.AvailableView.as_view(), "payouts-available"),
    api_path(r"payouts/(?P<payout_id>[0-9]{1,19})", api.DetailView.as_view(), "payouts-detail"),
]
