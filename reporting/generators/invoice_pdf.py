"""One VAT invoice as a PDF (fpdf2), rendered from the invoice's rows alone.

fpdf2's built-in Helvetica covers Latin-1; other characters in names are transliterated
(or replaced with '?') rather than shipping a font file.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from fpdf import FPDF

from ledger.money import format_minor
from reporting.models import VatInvoice
from reporting.vat import format_rate


def latin1(text: Any) -> str:
    decomposed = unicodedata.normalize("NFKD", str(text or ""))
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return kept.encode("latin-1", "replace").decode("latin-1")


def render_invoice_pdf(invoice: VatInvoice) -> bytes:
    currency = invoice.currency
    pdf = FPDF(format="A4")
    pdf.set_title(latin1(f"Invoice {invoice.invoice_number}"))
    pdf.set_author(latin1(invoice.seller.get("name", "")))
    pdf.set_creation_date(invoice.issued_at)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, latin1(f"Invoice {invoice.invoice_number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    for label, value in [
        ("Issued", invoice.issued_at.date().isoformat()),
        ("Period", f"{invoice.period_start.isoformat()} to {invoice.period_end.isoformat()}"),
        ("Currency", currency),
    ]:
        pdf.cell(0, 5, latin1(f"{label}: {value}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)

    seller, buyer = invoice.seller, invoice.buyer
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

    widths = (24, 62, 26, 18, 26, 26)
    headings = ("Date", "Description", "Net", "VAT %", "VAT", "Gross")
    pdf.set_font("Helvetica", "B", 9)
    for width, heading in zip(widths, headings, strict=True):
        pdf.cell(
            width, 6, heading, border="B", align="L" if heading in ("Date", "Description") else "R"
        )
    pdf.ln()
    pdf.set_font("Helvetica", "", 9)
    for line in invoice.lines.all():
        cells = (
            line.supplied_at.date().isoformat(),
            latin1(line.description)[:44],
            format_minor(line.net_cents, currency),
            format_rate(line.rate_bps),
            format_minor(line.vat_cents, currency),
            format_minor(line.gross_cents, currency),
        )
        for index, (width, text) in enumerate(zip(widths, cells, strict=True)):
            pdf.cell(width, 5, text, align="L" if index < 2 else "R")
        pdf.ln()
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 10)
    for label, cents in [
        ("Net", invoice.net_cents),
        (f"VAT {format_rate(invoice.rate_bps)}", invoice.vat_cents),
        ("Total", invoice.gross_cents),
    ]:
        pdf.cell(sum(widths) - 40, 6, latin1(label), align="R")
        pdf.cell(40, 6, format_minor(cents, currency), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "", 8)
    pdf.multi_cell(
        0,
        4,
        latin1(
            "Marketplace service fees on the charges listed, "
            + (
                "VAT included in the fee."
                if invoice.prices_include_vat
                else "VAT charged on top of the fee."
            )
            + " VAT is computed per line and rounded half up to the minor unit."
        ),
    )
    return bytes(pdf.output())
