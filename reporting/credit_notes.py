"""VAT credit notes: an invoice bills a charge's platform fee; when a refund or a lost
dispute later reduces that fee, a credit note gives the reduced part back, with its VAT.

Issued by the VAT report's job, right after the period's invoices
(`issue_vat_credit_notes`): for every line of the period's invoices, what the books have
taken back of the charge's fee (reporting.selectors.fee_reductions: the refund and dispute
records and the postings they point to) minus what earlier credit notes already gave back
is credited now. One credit note per invoice and run, numbered gap-free in a series of its
own (`<invoice series>-CN`, the same locked-counter scheme as the invoices).

Amounts are cumulative, as refunds are: after a credit note, the invoice line less all of
its credits is exactly what an invoice of the fee still kept would say (net, VAT and gross,
VAT rounded half up per line). So the invoices less the credit notes match the fee revenue
the ledger keeps, to the cent, however many partial refunds came and in whatever order.

A fee that grows back after it was credited (a refund booked, credited, then failed) is not
invoiced again here: it is logged for the back office.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from reporting import selectors
from reporting.models import Report, VatCreditNote, VatCreditNoteLine, VatInvoice
from reporting.services import invoice_series, lock_counter
from reporting.vat import vat_for_fee
from treasury.models import User
from treasury.rls import system_context
from treasury.services import record_audit

logger = logging.getLogger(__name__)


def credit_note_series(*, issued_on: date) -> str:
    return f"{invoice_series(issued_on=issued_on)}-CN"


def invoiced_fee_cents(invoice: VatInvoice, *, net_cents: int, gross_cents: int) -> int:
    """The fee an invoice line bills, as the ledger took it: its gross when the fee
    includes VAT, its net when VAT came on top."""
    return gross_cents if invoice.prices_include_vat else net_cents


@transaction.atomic
def issue_vat_credit_notes(
    *,
    period_start: date,
    period_end: date,
    currency: str | None = None,
    host_id: UUID | str | None = None,
    report: Report | None = None,
    actor: User | None = None,
) -> list[VatCreditNote]:
    """Credit what the books took back of the fees the period's invoices billed, not
    credited yet: one credit note per invoice, lines per charge."""
    issued_at = timezone.now()
    series = credit_note_series(issued_on=issued_at.date())
    with system_context():
        # Locked before anything is read: two jobs never credit the same reduction twice,
        # and the numbers they hand out have no gap (see issue_vat_invoices).
        counter = lock_counter(series)
        lines = list(
            selectors.invoice_lines_for_period(
                period_start=period_start,
                period_end=period_end,
                currency=currency,
                host_id=host_id,
            )
        )
        reductions = selectors.fee_reductions(lines=lines)
        due: dict[int, list[VatCreditNoteLine]] = defaultdict(list)
        invoices: dict[int, VatInvoice] = {}
        for line in lines:
            reduction = reductions.get(line.pk)
            if reduction is None:
                continue
            invoice = line.invoice
            includes = invoice.prices_include_vat
            billed = invoiced_fee_cents(
                invoice, net_cents=line.net_cents, gross_cents=line.gross_cents
            )
            credited = sum(c.fee_cents for c in line.credit_note_lines.all())
            kept = min(max(billed - reduction.cents, 0), billed)
            fee = billed - credited - kept
            if fee < 0:
                logger.warning(
                    "invoice line %s (charge %s): the fee kept grew by %s after it was"
                    " credited; not invoiced again",
                    line.pk,
                    line.reference_id,
                    -fee,
                )
            if fee <= 0:
                continue
            before = vat_for_fee(
                fee_cents=billed - credited, rate_bps=line.rate_bps, fee_includes_vat=includes
            )
            after = vat_for_fee(fee_cents=kept, rate_bps=line.rate_bps, fee_includes_vat=includes)
            invoices[invoice.pk] = invoice
            due[invoice.pk].append(
                VatCreditNoteLine(
                    invoice_line=line,
                    host_id=line.host_id,
                    reference_id=line.reference_id,
                    description=(
                        f"Marketplace service fee, charge {line.reference_id}:"
                        f" {', '.join(reduction.kinds)}"
                    ),
                    reductions={
                        "transactions": reduction.transactions,
                        "disputes": reduction.disputes,
                    },
                    rate_bps=line.rate_bps,
                    fee_cents=fee,
                    net_cents=before.net_cents - after.net_cents,
                    vat_cents=before.vat_cents - after.vat_cents,
                    gross_cents=before.gross_cents - after.gross_cents,
                )
            )
        if not due:
            return []
        number = counter.last_number
        notes: list[VatCreditNote] = []
        for invoice_id in sorted(due, key=lambda pk: (invoices[pk].series, invoices[pk].number)):
            invoice, note_lines = invoices[invoice_id], due[invoice_id]
            number += 1
            notes.append(
                VatCreditNote(
                    series=series,
                    number=number,
                    credit_note_number=f"{series}-{number:06d}",
                    invoice=invoice,
                    host_id=invoice.host_id,
                    currency=invoice.currency,
                    country=invoice.country,
                    rate_bps=invoice.rate_bps,
                    prices_include_vat=invoice.prices_include_vat,
                    fee_cents=sum(n.fee_cents for n in note_lines),
                    net_cents=sum(n.net_cents for n in note_lines),
                    vat_cents=sum(n.vat_cents for n in note_lines),
                    gross_cents=sum(n.gross_cents for n in note_lines),
                    seller=dict(settings.REPORTING_INVOICE_SELLER),
                    buyer=invoice.buyer,
                    report=report,
                    issued_at=issued_at,
                )
            )
        VatCreditNote.objects.bulk_create(notes)
        for note in notes:
            for note_line in due[note.invoice_id]:
                note_line.credit_note = note
        VatCreditNoteLine.objects.bulk_create(
            [note_line for note in notes for note_line in due[note.invoice_id]]
        )
        counter.last_number = number
        counter.save(update_fields=["last_number", "updated_at"])
        record_audit(
            actor=actor,
            action="vat_credit_note.issue",
            target=report,
            details={
                "series": series,
                "credit_note_numbers": [n.credit_note_number for n in notes],
                "invoice_numbers": [n.invoice.invoice_number for n in notes],
                "period_start": period_start.isoformat(),
                "period_end": period_end.isoformat(),
            },
        )
    return notes
