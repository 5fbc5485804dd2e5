"""Reports, VAT invoices and credit notes in the admin: read-only, amounts in major units; a
failed report can be retried."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from reporting.models import (
    InvoiceCounter,
    Report,
    ReportStatus,
    VatCreditNote,
    VatCreditNoteLine,
    VatInvoice,
    VatInvoiceLine,
)
from reporting.services import retry_report
from treasury.errors import TreasuryError
from treasury.money_format import format_money


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


class MoneyColumns:
    """net / vat / gross in major units with the currency's symbol."""

    def _currency(self, row: Any) -> str:
        return row.currency if hasattr(row, "currency") else row.invoice.currency

    @admin.display(description="Net", ordering="net_cents")
    def net(self, row: Any) -> str:
        return format_money(row.net_cents, self._currency(row))

    @admin.display(description="VAT", ordering="vat_cents")
    def vat(self, row: Any) -> str:
        return format_money(row.vat_cents, self._currency(row))

    @admin.display(description="Gross", ordering="gross_cents")
    def gross(self, row: Any) -> str:
        return format_money(row.gross_cents, self._currency(row))


class VatInvoiceLineInline(MoneyColumns, admin.TabularInline):
    model = VatInvoiceLine
    fields = ["reference_id", "supplied_at", "description", "net", "vat", "gross"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(VatInvoice)
class VatInvoiceAdmin(MoneyColumns, ReadOnlyAdmin):
    list_display = [
        "invoice_number",
        "host",
        "currency",
        "country",
        "rate_bps",
        "net",
        "vat",
        "gross",
        "period_start",
        "period_end",
        "issued_at",
    ]
    list_filter = ["series", "currency", "country"]
    search_fields = ["invoice_number", "host__email"]
    list_select_related = ["host"]
    inlines = [VatInvoiceLineInline]


class VatCreditNoteLineInline(MoneyColumns, admin.TabularInline):
    model = VatCreditNoteLine
    fields = ["reference_id", "description", "net", "vat", "gross"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def _currency(self, row: Any) -> str:
        return row.credit_note.currency

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(VatCreditNote)
class VatCreditNoteAdmin(MoneyColumns, ReadOnlyAdmin):
    list_display = [
        "credit_note_number",
        "invoice",
        "host",
        "currency",
        "net",
        "vat",
        "gross",
        "issued_at",
    ]
    list_filter = ["series", "currency", "country"]
    search_fields = ["credit_note_number", "invoice__invoice_number", "host__email"]
    list_select_related = ["host", "invoice"]
    inlines = [VatCreditNoteLineInline]


@admin.register(InvoiceCounter)
class InvoiceCounterAdmin(ReadOnlyAdmin):
    """Gap-free invoice numbering: read-only, only issuing invoices moves a counter."""

    list_display = ["series", "last_number", "updated_at"]
    search_fields = ["series"]
