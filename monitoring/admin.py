"""The night watch in the admin: reconciliation runs with their differences, verification
runs, and alerts with an audited "resolve with a note" action. Everything is read-only here:
runs are made by the jobs and the commands, alerts by the checks."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from monitoring import services
from monitoring.models import Alert, ReconciliationDifference, ReconciliationRun, VerificationRun
from treasury.errors import TreasuryError


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DifferenceInline(admin.TabularInline):
    model = ReconciliationDifference
    extra = 0
    can_delete = False
    fields = [
        "kind",
        "match_key",
        "stripe_transaction_id",
        "stripe_type",
        "stripe_net_cents",
        "stripe_currency",
        "ledger_idempotency_key",
        "ledger_net_cents",
        "ledger_currency",
        "occurred_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "period_start",
        "period_end",
        "status",
        "difference_count",
        "stripe_count",
        "ledger_count",
        "matched_count",
        "skipped_count",
        "trigger",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "trigger", "period_start"]
    readonly_fields = [f.name for f in ReconciliationRun._meta.fields]
    inlines = [DifferenceInline]


@admin.register(ReconciliationDifference)
class ReconciliationDifferenceAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "run",
        "kind",
        "match_key",
        "stripe_net_cents",
        "stripe_currency",
        "ledger_net_cents",
        "ledger_currency",
        "occurred_at",
    ]
    list_filter = ["kind", "stripe_currency"]
    search_fields = ["match_key", "stripe_transaction_id", "ledger_idempotency_key"]
    list_select_related = ["run"]
    readonly_fields = [f.name for f in ReconciliationDifference._meta.fields]


@admin.register(VerificationRun)
class VerificationRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "status", "difference_count", "trigger", "started_at", "finished_at"]
    list_filter = ["status", "trigger"]
    readonly_fields = [f.name for f in VerificationRun._meta.fields]


class ResolveForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=4000)


class OpenFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "open"), ("resolved", "resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "severity",
        "key",
        "title",
        "count",
        "first_seen_at",
        "last_seen_at",
        "notified_at",
        "resolved_at",
    ]
    list_filter = [OpenFilter, "severity", "first_seen_at"]
    search_fields = ["key", "title"]
    list_select_related = ["resolved_by"]
    readonly_fields = [f.name for f in Alert._meta.fields]
    actions = ["resolve"]

    @admin.action(description="Resolve the selected alerts (with a note)")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> HttpResponse | None:
        form = ResolveForm(request.POST if "note" in request.POST else None)
        if not form.is_valid():
            return TemplateResponse(
                request,
                "admin/monitoring/resolve.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Resolve alerts",
                    "alerts": queryset,
                    "form": form,
                    "opts": self.model._meta,
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        done = 0
        for alert in queryset.order_by("id"):
            try:
                services.resolve_alert(
                    alert_id=alert.pk,
                    actor=request.user,  # type: ignore[arg-type]
                    note=form.cleaned_data["note"],
                )
            except TreasuryError as exc:
                self.message_user(request, f"alert {alert.pk}: {exc.message}", messages.ERROR)
                continue
            done += 1
        if done:
            self.message_user(request, f"resolved {done} alert(s)", messages.SUCCESS)
        return None
