"""The review queue in the admin: most severe and highest scored first, the features that
drove each flag, and a resolve action that asks for a note (an audited service call)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join

from anomalies import selectors, services
from anomalies.models import Anomaly
from treasury.admin_resolve import OpenFilter, resolve_with_note


@admin.register(Anomaly)
class AnomalyAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "severity",
        "score",
        "detector",
        "subject",
        "user",
        "description",
        "driving_features",
        "flagged_at",
        "resolved_at",
    ]
    list_filter = [OpenFilter, "severity", "detector", "subject_type", "flagged_at"]
    search_fields = ["=id", "subject_id", "description", "user__email"]
    list_select_related = ["user", "resolved_by"]
    readonly_fields = [f.name for f in Anomaly._meta.fields] + ["features_table"]
    actions = ["resolve"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Anomaly]:
        return selectors.review_queue()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="subject")
    def subject(self, obj: Anomaly) -> str:
        return f"{obj.subject_type}:{obj.subject_id}"

    @admin.display(description="features")
    def driving_features(self, obj: Anomaly) -> str:
        items = list((obj.features or {}).items())[:6]
        return format_html_join(", ", "{}={}", ((k, v) for k, v in items))

    @admin.display(description="features that drove the flag")
    def features_table(self, obj: Anomaly) -> str:
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>", sorted((obj.features or {}).items())
        )
        return format_html("<table>{}</table>", rows)

    @admin.action(description="Resolve the selected anomalies (with a note)")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Anomaly]) -> HttpResponse | None:
        return resolve_with_note(
            self,
            request,
            queryset,
            noun="anomaly",
            plural="anomalies",
            hint="",
            describe=lambda a: f"[{a.severity}] {a.detector}: {a.description}",
            resolve=lambda pk, actor, note: services.resolve_anomaly(
                anomaly_id=pk, actor=actor, note=note
            ),
        )
