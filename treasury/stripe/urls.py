from __future__ import annotations

from treasury.stripe import api
from treasury.urls import api_path

urlpatterns = [
    api_path("stripe/webhook", api.StripeWebhookView.as_view(), "stripe-webhook"),
    api_path("stripe/accounts/onboard", api.OnboardView.as_view(), "stripe-accounts-onboard"),
    api_path("stripe/accounts/me", api.MyStripeAccountView.as_view(), "stripe-accounts-me"),
    api_path("stripe/charges", api.ChargeListView.as_view(), "stripe-charges"),
    api_path(
        r"stripe/charges/(?P<stripe_charge_id>[A-Za-z0-9_]+)",
        api.ChargeDetailView.as_view(),
        "stripe-charge-detail",
    ),
    api_path("stripe/demo-charges", api.DemoChargeView.as_view(), "stripe-demo-charges"),
]
