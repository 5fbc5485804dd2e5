"""The review queue in the admin: most severe and highest scored first, the features that
drove each flag, and a resolve action that asks for a note (an audited service call)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from anomalies import selectors, services
from anomalies.models import Anomaly
from treasury.errors import TreasuryError


class ResolveForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=4000)


class OpenFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "open"), ("resolved", "resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Anomaly]) -> QuerySet[Anomaly]:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


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
        form = ResolveForm(request.POST if "note" in request.POST else None)
        if not form.is_valid():
            return TemplateResponse(
                request,
                "admin/anomalies/resolve.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Resolve anomalies",
                    "anomalies": queryset,
                    "form": form,
                    "opts": self.model._meta,
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        done = 0
        for anomaly in queryset.order_by("id"):
            try:
                services.resolve_anomaly(
                    anomaly_id=anomaly.pk,
                    actor=request.user,  # type: ignore[arg-type]
                    note=form.cleaned_data["note"],
                )
            except TreasuryError as exc:
                self.message_user(request, f"anomaly {anomaly.pk}: {exc.message}", messages.ERROR)
                continue
            done += 1
        if done:
            self.message_user(request, f"resolved {done} anomaly(ies)", messages.SUCCESS)
        return None
