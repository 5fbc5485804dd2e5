"""The night watch in the admin: reconciliation runs with their differences, verification
runs, and alerts with an audited "resolve with a note" action. Everything is read-only here:
runs are made by the jobs and the commands, alerts by the checks."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from monitoring import services
from monitoring.models import Alert, ReconciliationDifference, ReconciliationRun, VerificationRun
from treasury.admin_resolve import OpenFilter, resolve_with_note


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
        return resolve_with_note(
            self,
            request,
            queryset,
            noun="alert",
            plural="alerts",
            hint="An incident that is still happening is raised again by the next check.",
            describe=lambda a: f"[{a.severity}] {a.key}: {a.title}",
            resolve=lambda pk, actor, note: services.resolve_alert(
                alert_id=pk, actor=actor, note=note
            ),
        )
