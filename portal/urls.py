"""The hosts' and artists' pages under /me/."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from portal import views

app_name = "portal"

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="portal/login.html",
            redirect_authenticated_user=True,
            next_page=reverse_lazy("portal:home"),
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="portal:login"), name="logout"),
    path("", views.HomeView.as_view(), name="home"),
    path("ledger/", views.EntriesView.as_view(), name="entries"),
    path("payouts/", views.PayoutsView.as_view(), name="payouts"),
    path("payouts/<int:payout_id>/", views.PayoutDetailView.as_view(), name="payout"),
    path("splits/", views.SplitRulesView.as_view(), name="splits"),
    path("splits/new/", views.SplitRuleFormView.as_view(), name="split-new"),
    path("splits/<int:rule_id>/", views.SplitRuleDetailView.as_view(), name="split"),
    path("splits/<int:rule_id>/edit/", views.SplitRuleFormView.as_view(), name="split-edit"),
    path(
        "splits/<int:rule_id>/archive/", views.SplitRuleArchiveView.as_view(), name="split-archive"
    ),
    path("account/", views.AccountView.as_view(), name="account"),
    path("account/onboard/", views.OnboardView.as_view(), name="onboard"),
    path("reports/", views.ReportsView.as_view(), name="reports"),
    path("reports/<int:report_id>/", views.ReportDetailView.as_view(), name="report"),
]
