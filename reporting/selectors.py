"""Reads for reports: the caller's reports (row-level security decides which), and the
ledger figures each report type is made of (read by jobs in the system context, scoped by
the report's parameters).

Periods are calendar dates in UTC: a period [start, end] covers start 00:00 UTC up to the
day after `end`, 00:00 UTC, exclusive; a tax year is January 1 to December 31, UTC.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import F, Func, QuerySet, TextField
from django.db.models.functions import Cast

from ledger import selectors as ledger_selectors
from reporting.models import (
    Report,
    ReportStatus,
    VatCreditNote,
    VatInvoice,
    VatInvoiceLine,
)
from treasury.errors import NotFound

# --- the caller's reports ---


def visible_reports() -> QuerySet[Report]:
    """Reports the caller's context may see: a user's own, every report for admins."""
    return Report.objects.all()


def report_for(*, report_id: int) -> Report:
    """One visible report; another user's report is a 404, as if it did not exist."""
    report = Report.objects.filter(pk=report_id).first()
    if report is None:
        raise NotFound(f"report {report_id} not found")
    return report


def recent_identical_report(*, dedupe_key: str, since: datetime) -> Report | None:
    """The newest report for the same request made since `since`, unless it failed."""
    return (
        Report.objects.filter(dedupe_key=dedupe_key, created_at__gte=since)
        .exclude(status=ReportStatus.FAILED)
        .order_by("-created_at", "-id")
        .first()
    )


# --- periods ---


def period_bounds(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """[start 00:00 UTC, the day after `end` 00:00 UTC): the end date is inclusive."""
    lower = datetime.combine(start, time.min, tzinfo=UTC) if start else None
    upper = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC) if end else None
    return lower, upper


def tax_year_bounds(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


# --- 1099: what moved through each payee's payable account, by kind and month ---

# Which business event a posting is, from its idempotency key and event source. First match
# wins. Refunds, disputes and payouts are recognised by the keys their services use
# (`refund:<id>`, `dispute:<id>...`, `payout:<id>:reserve`...) or by their event source, so
# their postings land in the right column as soon as those services post them; a reversal of
# a charge that names no refund is a refund too. Anything unrecognised is reported as
# `other`, never dropped.
EARNINGS_CATEGORY_SQL = """
    CASE
        WHEN t.idempotency_key LIKE 'refund:%%' OR t.event_source LIKE '%%refund%%'
             OR t.event_source = 'stripe_charge.reversal' THEN 'refunds'
        WHEN t.idempotency_key LIKE 'dispute:%%' OR t.event_source LIKE '%%dispute%%'
             THEN 'dispute_losses'
        WHEN t.idempotency_key LIKE 'payout:%%' OR t.event_source LIKE '%%payout%%'
             THEN 'payouts'
        WHEN t.event_source = 'stripe_charge' THEN 'charges'
        WHEN t.idempotency_key LIKE 'adjust%%' OR t.event_source = 'manual_adjustment'
             THEN 'adjustments'
        ELSE 'other'
    END
"""

EARNINGS_COLUMNS = (
    "payee_id",
    "email",
    "display_name",
    "currency",
    "month",
    "category",
    "credits_cents",
    "debits_cents",
    "transactions",
)


def payable_movements(
    *, tax_year: int, currency: str | None = None, user_id: UUID | str | None = None
) -> list[tuple[Any, ...]]:
    """Per payee, currency, month (1-12, UTC, of the posting's effective time) and category:
    credits and debits to the payee's payable account, and how many transactions.

    PostgreSQL does the sums over the year's entries (index on effective_at); the result has
    at most payees x currencies x 12 x 6 rows, whatever the size of the ledger.
    """
    lower, upper = tax_year_bounds(tax_year)
    filters = ["t.effective_at >= %s", "t.effective_at < %s"]
    params: list[Any] = [lower, upper]
    if currency:
        filters.append("e.currency = %s")
        params.append(currency)
    if user_id:
        filters.append("e.user_id = %s")
        params.append(str(user_id))
    sql = f"""
        SELECT e.user_id, u.email, u.display_name, e.currency,
               extract(month FROM t.effective_at AT TIME ZONE 'UTC')::int AS month,
               {EARNINGS_CATEGORY_SQL} AS category,
               coalesce(sum(e.amount_cents) FILTER (WHERE e.type = 'credit'), 0)::bigint,
               coalesce(sum(e.amount_cents) FILTER (WHERE e.type = 'debit'), 0)::bigint,
               count(DISTINCT t.id)
          FROM ledger_entries e
          JOIN ledger_accounts a ON a.id = e.account_id
          JOIN ledger_transactions t ON t.id = e.transaction_id
          JOIN users u ON u.id = e.user_id
         WHERE a.code LIKE 'user:%%:payable:%%' AND {" AND ".join(filters)}
         GROUP BY 1, 2, 3, 4, 5, 6
         ORDER BY 4, 2, 1, 5, 6
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- VAT invoices: the platform's fee on each charge ---

FEE_COLUMNS = ("transaction_id", "reference_id", "supplied_at", "currency", "fee_cents", "host_id")


def uninvoiced_fees(
    *,
    period_start: date,
    period_end: date,
    currency: str | None = None,
    host_id: UUID | str | None = None,
) -> list[tuple[Any, ...]]:
    """The platform's fee revenue on each charge in the period (by the charge's effective
    time) that no invoice line covers yet, with the charge's host (the metadata's host_id,
    which the Stripe integration writes on every charge). Charges naming no known host are
    left out: there is nobody to invoice."""
    lower, upper = period_bounds(period_start, period_end)
    filters = ["t.effective_at >= %s", "t.effective_at < %s"]
    params: list[Any] = [lower, upper]
    if currency:
        filters.append("e.currency = %s")
        params.append(currency)
    if host_id:
        filters.append("u.id = %s")
        params.append(str(host_id))
    sql = f"""
        SELECT t.id, coalesce(t.reference_id, ''), t.effective_at, e.currency,
               sum(e.amount_cents)::bigint, u.id
          FROM ledger_transactions t
          JOIN ledger_entries e ON e.transaction_id = t.id AND e.type = 'credit'
          JOIN ledger_accounts a ON a.id = e.account_id AND a.code LIKE 'platform:fee_revenue:%%'
          JOIN users u ON u.id::text = t.metadata->>'host_id'
         WHERE t.event_source = 'stripe_charge' AND t.reverses_id IS NULL
           AND NOT EXISTS (SELECT 1 FROM vat_invoice_lines l WHERE l.ledger_transaction_id = t.id)
           AND {" AND ".join(filters)}
         GROUP BY t.id, e.currency, u.id
         ORDER BY u.id, e.currency, t.effective_at, t.id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def invoices_for_period(
    *,
    period_start: date,
    period_end: date,
    currency: str | None = None,
    host_id: UUID | str | None = None,
) -> QuerySet[VatInvoice]:
    """Invoices issued for exactly this period (earlier runs' and this run's)."""
    rows = VatInvoice.objects.filter(period_start=period_start, period_end=period_end)
    if currency:
        rows = rows.filter(currency=currency)
    if host_id:
        rows = rows.filter(host_id=host_id)
    return rows.select_related("host").prefetch_related("lines").order_by("series", "number")


def credit_notes_for_period(
    *,
    period_start: date,
    period_end: date,
    currency: str | None = None,
    host_id: UUID | str | None = None,
) -> QuerySet[VatCreditNote]:
    """Credit notes of the invoices issued for exactly this period."""
    rows = VatCreditNote.objects.filter(
        invoice__period_start=period_start, invoice__period_end=period_end
    )
    if currency:
        rows = rows.filter(currency=currency)
    if host_id:
        rows = rows.filter(host_id=host_id)
    return (
        rows.select_related("invoice", "host")
        .prefetch_related("lines")
        .order_by("series", "number")
    )


def invoice_lines_for_period(
    *,
    period_start: date,
    period_end: date,
    currency: str | None = None,
    host_id: UUID | str | None = None,
) -> QuerySet[VatInvoiceLine]:
    """The lines of the invoices issued for exactly this period, with what has been
    credited on each so far."""
    rows = VatInvoiceLine.objects.filter(
        invoice__period_start=period_start, invoice__period_end=period_end
    )
    if currency:
        rows = rows.filter(invoice__currency=currency)
    if host_id:
        rows = rows.filter(host_id=host_id)
    return (
        rows.select_related("invoice", "ledger_transaction")
        .prefetch_related("credit_note_lines")
        .order_by("invoice__series", "invoice__number", "id")
    )


@dataclass
class FeeReduction:
    """How much of a charge's platform fee the books have taken back since the charge, and
    what took it: refunds and reversals of the charge (their net debit to fee revenue) and
    the platform's part of a lost dispute (the fee share of the funds the buyer got back)."""

    cents: int = 0
    transactions: list[int] = field(default_factory=list)
    disputes: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def add(self, cents: int, kind: str) -> None:
        self.cents += cents
        if kind not in self.kinds:
            self.kinds.append(kind)


FEE_REVENUE_CODE_PREFIX = "platform:fee_revenue:"


def fee_reductions(*, lines: list[VatInvoiceLine]) -> dict[int, FeeReduction]:
    """Per invoice line (its pk): what reduced the invoiced charge's fee, read from the
    refund and dispute records and the ledger postings they point to."""
    from disputes.models import Dispute, DisputeStatus, Refund
    from disputes.selectors import booked_refunded_cents
    from disputes.shares import ChargeSplit, dispute_shares
    from ledger.models import LedgerEntry, LedgerTransaction, Side
    from treasury.stripe.models import StripeCharge

    by_charge_txn = {line.ledger_transaction_id: line for line in lines}
    by_charge_id = {
        line.ledger_transaction.reference_id: line
        for line in lines
        if line.ledger_transaction.reference_id
    }
    reductions: dict[int, FeeReduction] = defaultdict(FeeReduction)
    # The postings that may give fee revenue back: a refund's (and a failed refund's, which
    # gives it back to the platform: a negative reduction), and any reversal of the charge.
    owner: dict[int, tuple[VatInvoiceLine, str]] = {}
    for refund in Refund.objects.filter(charge_id__in=list(by_charge_id)):
        line = by_charge_id[refund.charge_id]
        for txn_id in (refund.ledger_transaction_id, refund.failure_transaction_id):
            if txn_id is not None:
                owner[txn_id] = (line, "refunded")
    for txn_id, reversed_id in LedgerTransaction.objects.filter(
        reverses_id__in=list(by_charge_txn)
    ).values_list("id", "reverses_id"):
        owner.setdefault(txn_id, (by_charge_txn[reversed_id], "reversed"))
    net: dict[int, int] = defaultdict(int)
    for txn_id, side, cents in LedgerEntry.objects.filter(
        transaction_id__in=list(owner), account__code__startswith=FEE_REVENUE_CODE_PREFIX
    ).values_list("transaction_id", "type", "amount_cents"):
        net[txn_id] += cents if side == Side.DEBIT else -cents
    for txn_id in sorted(owner):
        line, kind = owner[txn_id]
        if net.get(txn_id):
            reduction = reductions[line.pk]
            reduction.add(net[txn_id], kind)
            reduction.transactions.append(txn_id)
    # A lost dispute: the buyer's bank took the disputed funds back for good, the
    # platform's part of them (split like a refund, after what was refunded) is fee it no
    # longer keeps. Funds disputed beyond what was left unrefunded are no fee.
    lost = Dispute.objects.filter(
        charge_id__in=list(by_charge_id),
        status=DisputeStatus.LOST,
        opened_transaction__isnull=False,
    ).order_by("id")
    charges = {
        c.stripe_charge_id: c
        for c in StripeCharge.objects.filter(stripe_charge_id__in={d.charge_id for d in lost})
    }
    for dispute in lost:
        charge = charges.get(dispute.charge_id)
        if charge is None or not charge.allocation:
            continue
        split = ChargeSplit.from_allocation_json(charge.allocation)
        refunded = booked_refunded_cents(charge=charge)
        shares = dispute_shares(
            charge=split,
            refunded_cents=refunded,
            disputed_cents=dispute.withdrawn_cents,
            fee_cents=0,
            fee_bearer=dispute.fee_bearer,
        )
        beyond = dispute.withdrawn_cents - min(
            dispute.withdrawn_cents, max(split.amount_cents - refunded, 0)
        )
        fee_part = shares.platform_cents - beyond
        if fee_part > 0:
            reduction = reductions[by_charge_id[dispute.charge_id].pk]
            reduction.add(fee_part, "dispute lost")
            reduction.disputes.append(dispute.stripe_dispute_id)
    return dict(reductions)


# --- ledger export ---

EXPORT_COLUMNS = (
    "entry_id",
    "created_at",
    "transaction_id",
    "idempotency_key",
    "event_source",
    "reference_id",
    "effective_at",
    "reverses_id",
    "account",
    "account_kind",
    "user_id",
    "type",
    "amount_cents",
    "currency",
)


@dataclass(frozen=True)
class ExportQuery:
    user_id: UUID | str | None
    currency: str | None
    period_start: date | None
    period_end: date | None

    def entries(self) -> QuerySet[Any]:
        lower, upper = period_bounds(self.period_start, self.period_end)
        return ledger_selectors.entries(
            user_id=self.user_id,
            currency=self.currency,
            created_from=lower,
            created_to=upper,
        )


def export_count(query: ExportQuery) -> int:
    return query.entries().order_by().count()


class IsoTimestamp(Func):
    """A timestamptz as ISO 8601 text in UTC, microseconds always shown
    (2025-01-10T12:00:00.000000+00:00), formatted by PostgreSQL."""

    template = (
        "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    )
    output_field = TextField()


def export_rows(query: ExportQuery, *, chunk_size: int) -> Iterator[tuple[Any, ...]]:
    """The entries in id order, with their transaction and account, streamed: on PostgreSQL
    `.iterator()` reads through a server-side cursor, `chunk_size` rows per fetch, so memory
    stays flat whatever the number of entries. Call inside a transaction (the cursor lives
    in it).

    Timestamps, ids and the transaction's metadata come as text from PostgreSQL (to_char,
    uuid::text, jsonb::text) and are written out as they are: parsing them into Python
    objects only to print them again was most of an export's time.
    """
    rows = (
        query.entries()
        .order_by("id")
        .annotate(
            created_at_iso=IsoTimestamp(F("created_at")),
            effective_at_iso=IsoTimestamp(F("transaction__effective_at")),
            user_id_text=Cast(F("user_id"), output_field=TextField()),
            metadata_json=Cast(F("transaction__metadata"), output_field=TextField()),
        )
        .values_list(
            "id",
            "created_at_iso",
            "transaction_id",
            "transaction__idempotency_key",
            "event_source",
            "reference_id",
            "effective_at_iso",
            "transaction__reverses_id",
            "account__code",
            "account__kind",
            "user_id_text",
            "type",
            "amount_cents",
            "currency",
            "metadata_json",
        )
    )
    return rows.iterator(chunk_size=chunk_size)
