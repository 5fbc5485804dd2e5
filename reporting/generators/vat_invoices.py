"""VAT invoices: the platform's fee on each charge is a service it sells the host.

The job first issues invoices for the period's charges that no invoice covers yet (one per
host and currency, numbered gap-free: services.issue_vat_invoices), then credit notes for
what refunds and lost disputes have since taken back of the fees those invoices billed
(credit_notes.issue_vat_credit_notes), then writes every invoice of the period and every
credit note of those invoices (earlier runs' and this one's) as CSV (one row per line; a
credit note's amounts negative, so that a column's sum is the fee kept) or JSON (invoices
and credit notes with their lines), and a PDF of each.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.utils import timezone

from ledger.money import format_minor
from reporting import selectors, services
from reporting.credit_notes import issue_vat_credit_notes
from reporting.generators.base import GeneratedReport, dump_json, store_main, write_csv
from reporting.generators.invoice_pdf import render_credit_note_pdf, render_invoice_pdf
from reporting.models import Report, ReportFormat, VatCreditNote, VatInvoice
from reporting.progress import Progress
from reporting.storage import OutputFile, StoredFile
from reporting.vat import format_rate
from treasury.rls import system_context


def invoice_record(invoice: VatInvoice) -> dict[str, Any]:
    currency = invoice.currency
    return {
        "invoice_number": invoice.invoice_number,
        "series": invoice.series,
        "number": invoice.number,
        "issued_at": invoice.issued_at,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "seller": invoice.seller,
        "buyer": invoice.buyer,
        "currency": currency,
        "country": invoice.country,
        "rate_bps": invoice.rate_bps,
        "vat_rate": format_rate(invoice.rate_bps),
        "prices_include_vat": invoice.prices_include_vat,
        "net_cents": invoice.net_cents,
        "net": format_minor(invoice.net_cents, currency),
        "vat_cents": invoice.vat_cents,
        "vat": format_minor(invoice.vat_cents, currency),
        "gross_cents": invoice.gross_cents,
        "gross": format_minor(invoice.gross_cents, currency),
        "pdf": pdf_name(invoice),
        "lines": [
            {
                "reference_id": line.reference_id,
                "ledger_transaction_id": line.ledger_transaction_id,
                "supplied_at": line.supplied_at,
                "description": line.description,
                "rate_bps": line.rate_bps,
                "vat_rate": format_rate(line.rate_bps),
                "net_cents": line.net_cents,
                "net": format_minor(line.net_cents, currency),
                "vat_cents": line.vat_cents,
                "vat": format_minor(line.vat_cents, currency),
                "gross_cents": line.gross_cents,
                "gross": format_minor(line.gross_cents, currency),
            }
            for line in invoice.lines.all()
        ],
    }


def credit_note_record(note: VatCreditNote) -> dict[str, Any]:
    currency = note.currency
    return {
        "credit_note_number": note.credit_note_number,
        "series": note.series,
        "number": note.number,
        "issued_at": note.issued_at,
        "invoice_number": note.invoice.invoice_number,
        "period_start": note.invoice.period_start,
        "period_end": note.invoice.period_end,
        "seller": note.seller,
        "buyer": note.buyer,
        "currency": currency,
        "country": note.country,
        "rate_bps": note.rate_bps,
        "vat_rate": format_rate(note.rate_bps),
        "prices_include_vat": note.prices_include_vat,
        "fee_cents": note.fee_cents,
        "net_cents": note.net_cents,
        "net": format_minor(note.net_cents, currency),
        "vat_cents": note.vat_cents,
        "vat": format_minor(note.vat_cents, currency),
        "gross_cents": note.gross_cents,
        "gross": format_minor(note.gross_cents, currency),
        "pdf": credit_note_pdf_name(note),
        "lines": [
            {
                "reference_id": line.reference_id,
                "description": line.description,
                "reductions": line.reductions,
                "rate_bps": line.rate_bps,
                "vat_rate": format_rate(line.rate_bps),
                "fee_cents": line.fee_cents,
                "net_cents": line.net_cents,
                "net": format_minor(line.net_cents, currency),
                "vat_cents": line.vat_cents,
                "vat": format_minor(line.vat_cents, currency),
                "gross_cents": line.gross_cents,
                "gross": format_minor(line.gross_cents, currency),
            }
            for line in note.lines.all()
        ],
    }


CSV_HEADER = [
    "document",
    "invoice_number",
    "credits_invoice",
    "issued_at",
    "period_start",
    "period_end",
    "seller_name",
    "seller_vat_id",
    "seller_country",
    "buyer_id",
    "buyer_name",
    "buyer_email",
    "buyer_country",
    "currency",
    "reference_id",
    "supplied_at",
    "description",
    "net_cents",
    "net",
    "vat_rate",
    "vat_cents",
    "vat",
    "gross_cents",
    "gross",
]


def csv_rows(records: list[dict[str, Any]], notes: list[dict[str, Any]] | None = None) -> Any:
    """Invoices' lines, then credit notes' lines with negative amounts (a credit note's
    number in `invoice_number`, the invoice it credits in `credits_invoice`)."""
    documents = [("invoice", r, 1) for r in records] + [("credit_note", n, -1) for n in notes or []]
    for kind, invoice, sign in documents:
        seller, buyer = invoice["seller"], invoice["buyer"]
        currency = invoice["currency"]
        for line in invoice["lines"]:
            yield [
                kind,
                invoice["credit_note_number"]
                if kind == "credit_note"
                else invoice["invoice_number"],
                invoice["invoice_number"] if kind == "credit_note" else "",
                invoice["issued_at"],
                invoice["period_start"],
                invoice["period_end"],
                seller.get("name"),
                seller.get("vat_id"),
                seller.get("country"),
                buyer.get("id"),
                buyer.get("name"),
                buyer.get("email"),
                buyer.get("country"),
                invoice["currency"],
                line["reference_id"],
                line.get("supplied_at", invoice["issued_at"]),
                line["description"],
                sign * line["net_cents"],
                format_minor(sign * line["net_cents"], currency),
                line["vat_rate"],
                sign * line["vat_cents"],
                format_minor(sign * line["vat_cents"], currency),
                sign * line["gross_cents"],
                format_minor(sign * line["gross_cents"], currency),
            ]


def pdf_name(invoice: VatInvoice) -> str:
    return f"{invoice.invoice_number}.pdf"


def credit_note_pdf_name(note: VatCreditNote) -> str:
    return f"{note.credit_note_number}.pdf"


def store_credit_note_pdf(note: VatCreditNote) -> StoredFile:
    output = OutputFile()
    output.write_bytes(render_credit_note_pdf(note))
    return output.store(
        location=f"reports/credit-notes/{note.series}/{credit_note_pdf_name(note)}",
        name=credit_note_pdf_name(note),
        content_type="application/pdf",
    )


def store_pdf(invoice: VatInvoice) -> StoredFile:
    """Invoice PDFs live once per invoice, whichever report rendered them; rendering again
    from the same rows gives the same document."""
    output = OutputFile()
    output.write_bytes(render_invoice_pdf(invoice))
    return output.store(
        location=f"reports/invoices/{invoice.series}/{pdf_name(invoice)}",
        name=pdf_name(invoice),
        content_type="application/pdf",
    )


def generate(*, report: Report, progress: Progress) -> GeneratedReport:
    params = report.parameters
    period_start = date.fromisoformat(params["period_start"])
    period_end = date.fromisoformat(params["period_end"])
    services.issue_vat_invoices(
        period_start=period_start,
        period_end=period_end,
        country=params["country"],
        currency=params.get("currency"),
        host_id=params.get("user_id"),
        report=report,
    )
    scope = {
        "period_start": period_start,
        "period_end": period_end,
        "currency": params.get("currency"),
        "host_id": params.get("user_id"),
    }
    issue_vat_credit_notes(**scope, report=report)
    progress.update(20)
    with system_context():
        invoices = list(selectors.invoices_for_period(**scope))
        notes = list(selectors.credit_notes_for_period(**scope))
    records = [invoice_record(invoice) for invoice in invoices]
    note_records = [credit_note_record(note) for note in notes]
    pdfs = []
    documents = len(invoices) + len(notes)
    for done, invoice in enumerate(invoices, 1):
        pdfs.append(store_pdf(invoice))
        progress.fraction(done, documents, start=20, end=85)
    for done, note in enumerate(notes, len(invoices) + 1):
        pdfs.append(store_credit_note_pdf(note))
        progress.fraction(done, documents, start=20, end=85)

    output = OutputFile()
    with output.text() as out:
        if report.format == ReportFormat.JSON:
            dump_json(
                {
                    "report": "vat_invoice",
                    "report_id": report.pk,
                    "period_start": period_start,
                    "period_end": period_end,
                    "currency": params.get("currency"),
                    "user_id": params.get("user_id"),
                    "generated_at": timezone.now(),
                    "invoices": records,
                    "credit_notes": note_records,
                },
                out,
            )
        else:
            write_csv(out, CSV_HEADER, csv_rows(records, note_records))
    progress.update(95)
    filename = f"vat-invoices-{period_start}-{period_end}-report-{report.pk}.{report.format}"
    return GeneratedReport(
        main=store_main(report, output, filename),
        row_count=sum(len(record["lines"]) for record in [*records, *note_records]),
        files=pdfs,
    )
