"""The books in the admin: read-only everywhere; corrections go through "Post adjustment"."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction, Side
from ledger.money import MAX_AMOUNT_MINOR, normalize_currency
from ledger.services import EntryLine, post_adjustment
from treasury.errors import TreasuryError


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ["code", "shard", "kind", "currency", "balance_cents", "owner", "created_at"]
    list_filter = ["kind", "currency"]
    search_fields = ["code", "owner__email"]
    list_select_related = ["owner"]


class EntryInline(admin.TabularInline):
    model = LedgerEntry
    fields = ["account", "type", "amount_cents", "currency", "user"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AdjustmentLineForm(forms.Form):
    account = forms.CharField(max_length=200, help_text="e.g. platform:adjustments:usd")
    type = forms.ChoiceField(choices=Side.choices)
    amount_cents = forms.IntegerField(
        min_value=1, max_value=MAX_AMOUNT_MINOR, label="Amount (minor units)"
    )
    currency = forms.CharField(max_length=3)

    def clean_currency(self) -> str:
        try:
            return normalize_currency(self.cleaned_data["currency"])
        except TreasuryError as exc:
            raise forms.ValidationError(exc.message) from exc


AdjustmentLines = forms.formset_factory(AdjustmentLineForm, extra=4, min_num=2, validate_min=True)


class AdjustmentForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    idempotency_key = forms.CharField(max_length=255)
    reference_id = forms.CharField(max_length=255, required=False)


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "idempotency_key", "event_source", "reference_id", "effective_at"]
    list_filter = ["event_source"]
    search_fields = ["idempotency_key", "reference_id"]
    date_hierarchy = "effective_at"
    inlines = [EntryInline]
    change_list_template = "admin/ledger/ledgertransaction/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.adjustment_view)
        return [path("adjust/", view, name="ledger_adjust"), *super().get_urls()]

    def adjustment_view(self, request: HttpRequest) -> HttpResponse:
        if not getattr(request.user, "is_admin", False):
            messages.error(request, "Only admins may post adjustments.")
            return HttpResponseRedirect(reverse("admin:ledger_ledgertransaction_changelist"))
        form = AdjustmentForm(
            request.POST or None, initial={"idempotency_key": f"adjust:{uuid.uuid4()}"}
        )
        lines = AdjustmentLines(request.POST or None, prefix="lines")
        if request.method == "POST" and form.is_valid() and lines.is_valid():
            entries = [
                EntryLine(d["account"], d["type"], d["amount_cents"], d["currency"])
                for d in lines.cleaned_data
                if d
            ]
            try:
                posted = post_adjustment(
                    actor=request.user,  # type: ignore[arg-type]
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    reason=form.cleaned_data["reason"],
                    reference_id=form.cleaned_data["reference_id"] or None,
                    entries=entries,
                )
            except TreasuryError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Adjustment {posted.idempotency_key} posted.")
                return HttpResponseRedirect(
                    reverse("admin:ledger_ledgertransaction_change", args=[posted.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Post a balanced adjustment",
            "form": form,
            "lines": lines,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ledger/adjustment.html", context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "transaction",
        "account",
        "type",
        "amount_cents",
        "currency",
        "user",
        "created_at",
    ]
    list_filter = ["type", "currency", "event_source"]
    search_fields = ["reference_id", "account__code", "transaction__idempotency_key"]
    list_select_related = ["transaction", "account", "user"]
    date_hierarchy = "created_at"
