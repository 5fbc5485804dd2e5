"""Report jobs and the VAT invoices they issue.

`reports` is the seed's table (user, type, format, location, generated_at) plus the job's
state: status, parameters, progress, row count, size, checksum and error. A report's files
live in a storage backend (local or S3); the row says where.

`vat_invoices` and `vat_invoice_lines` are legal documents: numbered gap-free per series
(`vat_invoice_counters`, see services.issue_vat_invoices), never edited or deleted
(PostgreSQL refuses UPDATE and DELETE), and a charge's fee is invoiced at most once.
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class ReportType(models.TextChoices):
    EARNINGS_1099 = "1099", "1099 earnings"
    VAT_INVOICE = "vat_invoice", "VAT invoices"
    LEDGER_EXPORT = "ledger_export", "Ledger export"


class ReportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    JSON = "json", "JSON"


class ReportStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


CONTENT_TYPES = {
    ReportFormat.CSV: "text/csv; charset=utf-8",
    ReportFormat.JSON: "application/json",
}


class Report(models.Model):
    """One requested report: who asked, what for, how far the job got, and its file."""

    id = models.BigAutoField(primary_key=True)
    # Who asked: the only non-admin who may see the row and download its files.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reports",
    )
    type = models.CharField(max_length=16, choices=ReportType.choices)
    format = models.CharField(max_length=8, choices=ReportFormat.choices)
    status = models.CharField(
        max_length=16, choices=ReportStatus.choices, default=ReportStatus.QUEUED
    )
    # What the report covers (tax year or period, currency, whose data, VAT country),
    # normalised so that identical requests have identical parameters.
    parameters = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    # sha256 of (requester, type, format, parameters): identical requests within
    # REPORTING_DEDUPE_SECONDS return the same report.
    dedupe_key = models.CharField(max_length=64)
    location = models.CharField(max_length=500, blank=True)  # storage name of the main file
    filename = models.CharField(max_length=255, blank=True)  # what a download is called
    content_type = models.CharField(max_length=100, blank=True)
    # Further files (a VAT report's invoice PDFs): [{name, location, content_type,
    # size_bytes, checksum_sha256}]
    files = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    row_count = models.BigIntegerField(null=True, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    checksum_sha256 = models.CharField(max_length=64, blank=True)
    progress_percent = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    generated_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "reports"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(type__in=ReportType.values), name="reports_type_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(format__in=ReportFormat.values), name="reports_format_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=ReportStatus.values), name="reports_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(progress_percent__lte=100), name="reports_progress_percent"
            ),
            models.CheckConstraint(
                condition=~models.Q(status=ReportStatus.DONE) | ~models.Q(location=""),
                name="reports_done_has_location",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "created_at"]),
            models.Index(fields=["dedupe_key", "created_at"]),
            models.Index(fields=["status", "updated_at"]),
        ]

    def __str__(self) -> str:
        return f"report {self.pk} {self.type}/{self.format} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (ReportStatus.DONE, ReportStatus.FAILED)


class InvoiceCounter(models.Model):
    """The last number issued in a series, row-locked by whoever issues the next ones."""

    series = models.CharField(max_length=64, primary_key=True)
    last_number = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "vat_invoice_counters"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(last_number__gte=0), name="vat_invoice_counters_not_negative"
            )
        ]

    def __str__(self) -> str:
        return f"{self.series}: {self.last_number}"


class VatInvoice(models.Model):
    """The platform's invoice to a host for its fees on the host's charges in a period."""

    id = models.BigAutoField(primary_key=True)
    series = models.CharField(max_length=64)
    number = models.BigIntegerField()
    invoice_number = models.CharField(max_length=100, unique=True)  # "<series>-<number>"
    host = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="vat_invoices"
    )
    currency = models.CharField(max_length=3)
    country = models.CharField(max_length=2)  # whose VAT rate applies
    rate_bps = models.PositiveIntegerField()
    prices_include_vat = models.BooleanField()
    period_start = models.DateField()
    period_end = models.DateField()  # inclusive
    net_cents = models.BigIntegerField()
    vat_cents = models.BigIntegerField()
    gross_cents = models.BigIntegerField()
    seller = models.JSONField(encoder=DjangoJSONEncoder)  # as printed on the invoice
    buyer = models.JSONField(encoder=DjangoJSONEncoder)
    report = models.ForeignKey(
        Report, null=True, blank=True, on_delete=models.PROTECT, related_name="vat_invoices"
    )
    issued_at = models.DateTimeField()

    class Meta:
        db_table = "vat_invoices"
        ordering = ["series", "number"]
        constraints = [
            models.UniqueConstraint(fields=["series", "number"], name="vat_invoices_series_number"),
            models.CheckConstraint(
                condition=models.Q(number__gt=0), name="vat_invoices_number_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(gross_cents=models.F("net_cents") + models.F("vat_cents")),
                name="vat_invoices_gross_is_net_plus_vat",
            ),
            models.CheckConstraint(
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"),
                name="vat_invoices_currency_iso",
            ),
            models.CheckConstraint(
                condition=models.Q(period_end__gte=models.F("period_start")),
                name="vat_invoices_period_ordered",
            ),
        ]
        indexes = [models.Index(fields=["host", "period_start", "period_end"])]

    def __str__(self) -> str:
        return self.invoice_number


class VatInvoiceLine(models.Model):
    """The platform's fee on one charge, with its VAT. A charge is invoiced at most once."""

    id = models.BigAutoField(primary_key=True)
    invoice = models.ForeignKey(VatInvoice, on_delete=models.PROTECT, related_name="lines")
    # The invoice's host, copied so that row-level security filters lines without a join.
    host = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    ledger_transaction = models.OneToOneField(
        "ledger.LedgerTransaction", on_delete=models.PROTECT, related_name="vat_invoice_line"
    )
    reference_id = models.CharField(max_length=255, blank=True)  # the Stripe charge id
    description = models.CharField(max_length=255)
    supplied_at = models.DateTimeField()  # the charge's effective time
    rate_bps = models.PositiveIntegerField()
    net_cents = models.BigIntegerField()
    vat_cents = models.BigIntegerField()
    gross_cents = models.BigIntegerField()

    class Meta:
        db_table = "vat_invoice_lines"
        ordering = ["invoice", "supplied_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(gross_cents=models.F("net_cents") + models.F("vat_cents")),
                name="vat_invoice_lines_gross_is_net_plus_vat",
            ),
            models.CheckConstraint(
                condition=models.Q(net_cents__gte=0, vat_cents__gte=0),
                name="vat_invoice_lines_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id}: {self.description}"


class VatCreditNote(models.Model):
    """A correction to an invoice: the fee it billed was reduced afterwards (a refund, a
    lost dispute), and the credit note gives back that part of the fee and of its VAT.
    Numbered gap-free in a series of its own (`<invoice series>-CN`), never edited."""

    id = models.BigAutoField(primary_key=True)
    series = models.CharField(max_length=64)
    number = models.BigIntegerField()
    credit_note_number = models.CharField(max_length=100, unique=True)  # "<series>-<number>"
    invoice = models.ForeignKey(VatInvoice, on_delete=models.PROTECT, related_name="credit_notes")
    host = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="vat_credit_notes"
    )
    currency = models.CharField(max_length=3)
    country = models.CharField(max_length=2)
    rate_bps = models.PositiveIntegerField()
    prices_include_vat = models.BooleanField()
    # The fee given back, as the ledger took it back (the gross when prices include VAT,
    # else the net), and the document's amounts.
    fee_cents = models.BigIntegerField()
    net_cents = models.BigIntegerField()
    vat_cents = models.BigIntegerField()
    gross_cents = models.BigIntegerField()
    seller = models.JSONField(encoder=DjangoJSONEncoder)
    buyer = models.JSONField(encoder=DjangoJSONEncoder)
    report = models.ForeignKey(
        Report, null=True, blank=True, on_delete=models.PROTECT, related_name="vat_credit_notes"
    )
    issued_at = models.DateTimeField()

    class Meta:
        db_table = "vat_credit_notes"
        ordering = ["series", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["series", "number"], name="vat_credit_notes_series_number"
            ),
            models.CheckConstraint(
                condition=models.Q(number__gt=0), name="vat_credit_notes_number_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(gross_cents=models.F("net_cents") + models.F("vat_cents")),
                name="vat_credit_notes_gross_is_net_plus_vat",
            ),
            models.CheckConstraint(
                condition=models.Q(fee_cents__gt=0, net_cents__gte=0, vat_cents__gte=0),
                name="vat_credit_notes_amounts",
            ),
        ]
        indexes = [models.Index(fields=["host", "issued_at"])]

    def __str__(self) -> str:
        return self.credit_note_number


class VatCreditNoteLine(models.Model):
    """What one invoice line's fee was reduced by since it (or its last credit) was issued."""

    id = models.BigAutoField(primary_key=True)
    credit_note = models.ForeignKey(VatCreditNote, on_delete=models.PROTECT, related_name="lines")
    invoice_line = models.ForeignKey(
        VatInvoiceLine, on_delete=models.PROTECT, related_name="credit_note_lines"
    )
    # The invoice's host, copied so that row-level security filters lines without a join.
    host = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reference_id = models.CharField(max_length=255, blank=True)  # the Stripe charge id
    description = models.CharField(max_length=500)
    # What reduced the fee: ledger transaction ids (refunds, reversals) and dispute ids.
    reductions = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    rate_bps = models.PositiveIntegerField()
    fee_cents = models.BigIntegerField()
    net_cents = models.BigIntegerField()
    vat_cents = models.BigIntegerField()
    gross_cents = models.BigIntegerField()

    class Meta:
        db_table = "vat_credit_note_lines"
        ordering = ["credit_note", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(gross_cents=models.F("net_cents") + models.F("vat_cents")),
                name="vat_credit_note_lines_gross_is_net_plus_vat",
            ),
            models.CheckConstraint(
                condition=models.Q(fee_cents__gt=0, net_cents__gte=0, vat_cents__gte=0),
                name="vat_credit_note_lines_amounts",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.credit_note_id}: {self.description}"
