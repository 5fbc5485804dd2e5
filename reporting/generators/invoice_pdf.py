"""VAT invoices and credit notes as PDFs (fpdf2), rendered from their rows alone.

A line's description is printed whole, wrapped in its cell (a charge id is how a host finds
the sale a fee was for; cutting it off made it useless). fpdf2's built-in Helvetica covers
Latin-1; other characters in names are transliterated (or replaced with '?') rather than
shipping a font file.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from ledger.money import format_minor
from reporting.models import VatCreditNote, VatInvoice
from reporting.vat import format_rate


def latin1(text: Any) -> str:
    decomposed = unicodedata.normalize("NFKD", str(text or ""))
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return kept.encode("latin-1", "replace").decode("latin-1")


def _document(
    *,
    title: str,
    facts: list[tuple[str, str]],
    seller: dict[str, Any],
    buyer: dict[str, Any],
    issued_at: datetime,
    currency: str,
    rows: Iterable[tuple[str, str, int, int, int, int]],
    totals: list[tuple[str, int]],
    note: str,
    compress: bool,
) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_compression(compress)
    pdf.set_title(latin1(title))
    pdf.set_author(latin1(seller.get("name", "")))
    pdf.set_creation_date(issued_at)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    for label, value in facts:
        pdf.cell(0, 5, latin1(f"{label}: {value}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)

    top = pdf.get_y()
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(90, 5, "From", new_x="LEFT", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(
        90,
        5,
        latin1(
            f"{seller.get('name', '')}\n{seller.get('address', '')}\n"
            f"VAT ID: {seller.get('vat_id', '')}\nCountry: {seller.get('country', '')}"
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    bottom = pdf.get_y()
    pdf.set_xy(110, top)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(90, 5, "To", new_x="LEFT", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    pdf.multi_cell(
        90,
        5,
        latin1(
            f"{buyer.get('name', '')}\n{buyer.get('email', '')}\n"
            f"Account: {buyer.get('id', '')}\nCountry: {buyer.get('country', '')}"
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.set_y(max(bottom, pdf.get_y()) + 6)

    pdf.set_font("Helvetica", "", 9)
    with pdf.table(
        col_widths=(22, 70, 24, 16, 22, 24),
        text_align=("LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        headings_style=FontFace(emphasis="BOLD"),
        borders_layout="HORIZONTAL_LINES",
        line_height=5,
    ) as table:
        table.row(("Date", "Description", "Net", "VAT %", "VAT", "Gross"))
        for day, description, rate_bps, net, vat, gross in rows:
            table.row(
                (
                    day,
                    latin1(description),
                    format_minor(net, currency),
                    format_rate(rate_bps),
                    format_minor(vat, currency),
                    format_minor(gross, currency),
                )
            )
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 10)
    for label, cents in totals:
        pdf.cell(138, 6, latin1(label), align="R")
        pdf.cell(40, 6, format_minor(cents, currency), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "", 8)
    pdf.multi_cell(0, 4, latin1(note))
    return bytes(pdf.output())


def _vat_note(prices_include_vat: bool) -> str:
    return (
        "VAT included in the fee." if prices_include_vat else "VAT charged on top of the fee."
    ) + " VAT is computed per line and rounded half up to the minor unit."


def render_invoice_pdf(invoice: VatInvoice, *, compress: bool = True) -> bytes:
    return _document(
        title=f"Invoice {invoice.invoice_number}",
        facts=[
            ("Issued", invoice.issued_at.date().isoformat()),
            ("Period", f"{invoice.period_start.isoformat()} to {invoice.period_end.isoformat()}"),
            ("Currency", invoice.currency),
        ],
        seller=invoice.seller,
        buyer=invoice.buyer,
        issued_at=invoice.issued_at,
        currency=invoice.currency,
        rows=(
            (
                line.supplied_at.date().isoformat(),
                line.description,
                line.rate_bps,
                line.net_cents,
                line.vat_cents,
                line.gross_cents,
            )
            for line in invoice.lines.all()
        ),
        totals=[
            ("Net", invoice.net_cents),
            (f"VAT {format_rate(invoice.rate_bps)}", invoice.vat_cents),
            ("Total", invoice.gross_cents),
        ],
        note="Marketplace service fees on the charges listed, "
        + _vat_note(invoice.prices_include_vat),
        compress=compress,
    )


def render_credit_note_pdf(note: VatCreditNote, *, compress: bool = True) -> bytes:
    invoice = note.invoice
    return _document(
        title=f"Credit note {note.credit_note_number}",
        facts=[
            ("Issued", note.issued_at.date().isoformat()),
            (
                "Credits invoice",
                f"{invoice.invoice_number} of {invoice.issued_at.date().isoformat()}",
            ),
            ("Currency", note.currency),
        ],
        seller=note.seller,
        buyer=note.buyer,
        issued_at=note.issued_at,
        currency=note.currency,
        rows=(
            (
                note.issued_at.date().isoformat(),
                line.description,
                line.rate_bps,
                line.net_cents,
                line.vat_cents,
                line.gross_cents,
            )
            for line in note.lines.all()
        ),
        totals=[
            ("Net credited", note.net_cents),
            (f"VAT {format_rate(note.rate_bps)} credited", note.vat_cents),
            ("Total credited", note.gross_cents),
        ],
        note=(
            f"Marketplace service fees billed on invoice {invoice.invoice_number} and since"
            " given back (refunds, lost disputes) on the charges listed. "
            + _vat_note(note.prices_include_vat)
        ),
        compress=compress,
    )
