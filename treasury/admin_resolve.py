"""One "resolve with a note" for the admin's review queues (anomalies, alerts): a status
filter on `resolved_at`, and an action that asks for the note, then resolves each selected
row through its app's audited service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from treasury.errors import TreasuryError
from treasury.models import User


class ResolveForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), max_length=4000)


class OpenFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "open"), ("resolved", "resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


def resolve_with_note(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    noun: str,
    plural: str,
    hint: str,
    describe: Callable[[Any], str],
    resolve: Callable[[int, User, str], Model],
) -> HttpResponse | None:
    """First the form asking for the note; once it is given, `resolve(pk, actor, note)` for
    each selected row (a refusal is reported for that row, the others go on)."""
    form = ResolveForm(request.POST if "note" in request.POST else None)
    if not form.is_valid():
        return TemplateResponse(
            request,
            "admin/resolve_with_note.html",
            {
                **model_admin.admin_site.each_context(request),
                "title": f"Resolve {plural}",
                "hint": hint,
                "items": [(row.pk, describe(row)) for row in queryset],
                "form": form,
                "opts": model_admin.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )
    done = 0
    for row in queryset.order_by("id"):
        try:
            resolve(row.pk, request.user, form.cleaned_data["note"])  # type: ignore[arg-type]
        except TreasuryError as exc:
            model_admin.message_user(request, f"{noun} {row.pk}: {exc.message}", messages.ERROR)
            continue
        done += 1
    if done:
        model_admin.message_user(request, f"resolved {done} {plural}", messages.SUCCESS)
    return None
