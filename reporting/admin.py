"""Reports and VAT invoices in the admin: read-only; a failed report can be retried."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from reporting.models import InvoiceCounter, Report, ReportStatus, VatInvoice, VatInvoiceLine
from reporting.services import retry_report
from treasury.errors import TreasuryError


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Report)
class ReportAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "type",
        "format",
        "status",
        "progress_percent",
        "user",
        "row_count",
        "size_bytes",
        "attempts",
        "created_at",
        "generated_at",
    ]
    list_filter = ["type", "format", "status"]
    search_fields = ["user__email", "location", "checksum_sha256"]
    list_select_related = ["user"]
    actions = ["retry_failed"]

    @admin.action(description="Retry the selected failed reports")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Report]) -> None:
        retried = 0
        for report in queryset.filter(status=ReportStatus.FAILED):
            try:
                retry_report(report=report, actor=request.user)  # type: ignore[arg-type]
            except TreasuryError as exc:
                self.message_user(request, f"report {report.pk}: {exc.message}", messages.ERROR)
            else:
                retried += 1
        self.message_user(request, f"{retried} report(s) queued again.", messages.SUCCESS)


class VatInvoiceLineInline(admin.TabularInline):
    model = VatInvoiceLine
    fields = ["reference_id", "supplied_at", "description", "net_cents", "vat_cents", "gross_cents"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(VatInvoice)
class VatInvoiceAdmin(ReadOnlyAdmin):
    list_display = [
        "invoice_number",
        "host",
        "currency",
        "country",
        "rate_bps",
        "net_cents",
        "vat_cents",
        "gross_cents",
        "period_start",
        "period_end",
        "issued_at",
    ]
    list_filter = ["series", "currency", "country"]
    search_fields = ["invoice_number", "host__email"]
    list_select_related = ["host"]
    inlines = [VatInvoiceLineInline]


@admin.register(InvoiceCounter)
class InvoiceCounterAdmin(ReadOnlyAdmin):
    """Gap-free invoice numbering: read-only, only issuing invoices moves a counter."""

    list_display = ["series", "last_number", "updated_at"]
    search_fields = ["series"]
