"""Every write of the reporting app: requesting a report, running its job, retrying it, and
issuing VAT invoices.

A request is validated, deduplicated and stored in one transaction; the django-q2 job is
queued once that transaction commits. The job (`run_report`) claims the report, runs its
generator (which reads the books in the system context, scoped by the report's parameters)
and records the outcome: the file's location, size, checksum and row count, or the error. A
failed report keeps its error until `retry_report` queues it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import pandas as pd
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from ledger.money import normalize_currency
from reporting import selectors
from reporting.generators.base import GeneratedReport
from reporting.models import (
    InvoiceCounter,
    Report,
    ReportFormat,
    ReportStatus,
    ReportType,
    VatInvoice,
    VatInvoiceLine,
)
from reporting.progress import Progress
from reporting.vat import vat_for_fee
from treasury.errors import Conflict, Forbidden, InvalidInput
from treasury.models import User
from treasury.rls import system_context
from treasury.services import record_audit, snapshot

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 4000
EARLIEST_TAX_YEAR = 2000


# --- requesting ---


def _choice(value: str, choices: type[Any], field: str) -> str:
    if value not in choices.values:
        allowed = ", ".join(choices.values)
        raise InvalidInput(
            f"unknown {field} {value!r}: use one of {allowed}",
            fields={field: [f"one of {allowed}"]},
        )
    return value


def _not_for(report_type: str, **given: object) -> None:
    for name, value in given.items():
        if value is not None:
            raise InvalidInput(
                f"{name} does not apply to {report_type} reports",
                fields={name: [f"not used by {report_type} reports"]},
            )


def _subject(*, requester: User, user_id: UUID | str | None) -> str | None:
    """Whose data the report covers: a user's own, always; an admin's choice (None: all)."""
    if not requester.is_admin:
        if user_id is not None and str(user_id) != str(requester.pk):
            raise Forbidden(
                "only admins may request reports about other users",
                fields={"user": ["must be yourself, or left out"]},
            )
        return str(requester.pk)
    if user_id is None:
        return None
    with system_context():
        if not User.objects.filter(pk=user_id).exists():
            raise InvalidInput(f"unknown user {user_id}", fields={"user": ["unknown user"]})
    return str(user_id)


def vat_rate_bps(country: str) -> int:
    rates = {code.upper(): rate for code, rate in settings.REPORTING_VAT_RATES_BPS.items()}
    if country not in rates:
        configured = ", ".join(sorted(rates))
        raise InvalidInput(
            f"no VAT rate is configured for country {country!r} (configured: {configured})",
            fields={"country": ["no VAT rate configured"]},
        )
    return int(rates[country])


def report_parameters(
    *,
    requester: User,
    report_type: str,
    tax_year: int | None = None,
    period_start: date | None = None,
    period_end: date | None = None,
    currency: str | None = None,
    user_id: UUID | str | None = None,
    country: str | None = None,
) -> dict[str, Any]:
    """The request's parameters, checked and normalised (the same request, the same dict)."""
    _choice(report_type, ReportType, "type")
    parameters: dict[str, Any] = {
        "currency": normalize_currency(currency) if currency else None,
        "user_id": _subject(requester=requester, user_id=user_id),
    }
    if period_start and period_end and period_end < period_start:
        raise InvalidInput(
            f"the period ends ({period_end}) before it starts ({period_start})",
            fields={"period_end": ["must not be before period_start"]},
        )
    if report_type == ReportType.EARNINGS_1099:
        _not_for(report_type, period_start=period_start, period_end=period_end, country=country)
        this_year = timezone.now().year
        if tax_year is None:
            raise InvalidInput("tax_year is required", fields={"tax_year": ["required"]})
        if tax_year > this_year:
            raise InvalidInput(
                f"tax year {tax_year} is in the future",
                fields={"tax_year": [f"must be {this_year} or earlier"]},
            )
        if tax_year < EARLIEST_TAX_YEAR:
            raise InvalidInput(
                f"tax year {tax_year} is before {EARLIEST_TAX_YEAR}",
                fields={"tax_year": [f"must be {EARLIEST_TAX_YEAR} or later"]},
            )
        parameters["tax_year"] = tax_year
    elif report_type == ReportType.VAT_INVOICE:
        _not_for(report_type, tax_year=tax_year)
        missing = {
            name: ["required"]
            for name, value in (("period_start", period_start), ("period_end", period_end))
            if value is None
        }
        if missing:
            raise InvalidInput(
                "VAT invoices need a period: period_start and period_end", fields=missing
            )
        country = (country or settings.REPORTING_VAT_DEFAULT_COUNTRY).strip().upper()
        vat_rate_bps(country)
        parameters.update(
            period_start=period_start.isoformat(),  # type: ignore[union-attr]
            period_end=period_end.isoformat(),  # type: ignore[union-attr]
            country=country,
        )
    else:
        _not_for(report_type, tax_year=tax_year, country=country)
        parameters.update(
            period_start=period_start.isoformat() if period_start else None,
            period_end=period_end.isoformat() if period_end else None,
        )
    return parameters


def dedupe_key(
    *, requester: User, report_type: str, report_format: str, parameters: dict[str, Any]
) -> str:
    canonical = json.dumps(
        {
            "requester": str(requester.pk),
            "type": report_type,
            "format": report_format,
            "parameters": parameters,
        },
        sort_keys=True,
        separators=(",", ":"),
        cls=DjangoJSONEncoder,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@transaction.atomic
def request_report(
    *,
    requester: User,
    report_type: str,
    report_format: str,
    tax_year: int | None = None,
    period_start: date | None = None,
    period_end: date | None = None,
    currency: str | None = None,
    user_id: UUID | str | None = None,
    country: str | None = None,
) -> Report:
    """Store a report request and queue its job (after commit); audited.

    An identical request (same requester, type, format and parameters) made within
    REPORTING_DEDUPE_SECONDS returns the report already queued, running or done (its
    `was_deduplicated` is True): a double click makes one report, not two.
    """
    _choice(report_format, ReportFormat, "format")
    parameters = report_parameters(
        requester=requester,
        report_type=report_type,
        tax_year=tax_year,
        period_start=period_start,
        period_end=period_end,
        currency=currency,
        user_id=user_id,
        country=country,
    )
    key = dedupe_key(
        requester=requester,
        report_type=report_type,
        report_format=report_format,
        parameters=parameters,
    )
    with system_context():
        # Two identical requests at once: the second waits here, then finds the first.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"report:{key}"]
            )
        since = timezone.now() - timedelta(seconds=settings.REPORTING_DEDUPE_SECONDS)
        existing = selectors.recent_identical_report(dedupe_key=key, since=since)
        if existing is not None:
            existing.was_deduplicated = True  # type: ignore[attr-defined]
            return existing
        report = Report.objects.create(
            user=requester,
            type=report_type,
            format=report_format,
            parameters=parameters,
            dedupe_key=key,
        )
        record_audit(
            actor=requester, action="report.request", target=report, after=snapshot(report)
        )
    report.was_deduplicated = False  # type: ignore[attr-defined]
    transaction.on_commit(lambda: enqueue_report(report_id=report.pk))
    return report


def enqueue_report(*, report_id: int) -> str:
    """Hand the report to django-q2 (called once the request's transaction committed)."""
    from django_q.tasks import async_task

    task_id = async_task(
        "reporting.tasks.generate_report",
        report_id,
        task_name=f"report-{report_id}",
        group="reports",
    )
    with system_context():
        Report.objects.filter(pk=report_id).update(task_id=str(task_id or "")[:64])
    return str(task_id)


@transaction.atomic
def retry_report(*, report: Report, actor: User | None) -> Report:
    """Queue a failed report again (the same row, its attempts counted); audited."""
    with system_context():
        locked = Report.objects.select_for_update().get(pk=report.pk)
        if locked.status != ReportStatus.FAILED:
            raise Conflict(
                f"report {locked.pk} is {locked.status}: only failed reports can be retried",
                fields={"status": [locked.status]},
            )
        before = snapshot(locked)
        locked.status = ReportStatus.QUEUED
        locked.progress_percent = 0
        locked.save(update_fields=["status", "progress_percent", "updated_at"])
        record_audit(
            actor=actor, action="report.retry", target=locked, before=before, after=snapshot(locked)
        )
    transaction.on_commit(lambda: enqueue_report(report_id=locked.pk))
    return locked


# --- running the job ---


@transaction.atomic
def claim_report(*, report_id: int) -> Report | None:
    """Mark a queued report running (or take over one whose worker died: running with no
    progress for REPORTING_STALE_SECONDS). None when there is nothing to do: done, failed,
    or another worker has it."""
    stale_before = timezone.now() - timedelta(seconds=settings.REPORTING_STALE_SECONDS)
    with system_context():
        report = Report.objects.select_for_update().filter(pk=report_id).first()
        if report is None:
            return None
        runnable = report.status == ReportStatus.QUEUED or (
            report.status == ReportStatus.RUNNING and report.updated_at < stale_before
        )
        if not runnable:
            return None
        report.status = ReportStatus.RUNNING
        report.attempts += 1
        report.started_at = timezone.now()
        report.progress_percent = 0
        report.error = ""
        report.save()
    return report


@transaction.atomic
def complete_report(*, report_id: int, result: GeneratedReport) -> Report:
    with system_context():
        report = Report.objects.select_for_update().get(pk=report_id)
        report.status = ReportStatus.DONE
        report.location = result.main.location
        report.filename = result.main.name
        report.content_type = result.main.content_type
        report.size_bytes = result.main.size_bytes
        report.checksum_sha256 = result.main.checksum_sha256
        report.row_count = result.row_count
        report.files = [stored.as_json() for stored in result.files]
        report.progress_percent = 100
        report.generated_at = timezone.now()
        report.error = ""
        report.save()
    return report


@transaction.atomic
def fail_report(*, report_id: int, error: str) -> Report:
    with system_context():
        report = Report.objects.select_for_update().get(pk=report_id)
        report.status = ReportStatus.FAILED
        report.error = error[:MAX_ERROR_LENGTH]
        report.save(update_fields=["status", "error", "updated_at"])
    return report


def run_report(*, report_id: int) -> Report | None:
    """The job: claim, generate, record. Not one transaction on purpose: the claim commits
    first (so the API shows `running`), the generator commits what it must (issued invoices)
    and reads in its own transactions, and the outcome is recorded last.

    A generator's exception is recorded on the report (status `failed`, the error) and not
    raised: django-q2 would otherwise redeliver the task on its own schedule; a retry is
    `retry_report`'s decision.
    """
    from reporting.generators import generator_for

    report = claim_report(report_id=report_id)
    if report is None:
        with system_context():
            return Report.objects.filter(pk=report_id).first()
    try:
        with Progress(report.pk) as progress:
            result = generator_for(report.type)(report=report, progress=progress)
    except Exception as exc:  # recorded on the report; the job itself succeeds
        logger.exception("report %s (%s) failed", report.pk, report.type)
        return fail_report(report_id=report.pk, error=f"{type(exc).__name__}: {exc}")
    return complete_report(report_id=report.pk, result=result)


# --- VAT invoices ---


def invoice_series(*, issued_on: date) -> str:
    return settings.REPORTING_INVOICE_SERIES.format(year=issued_on.year)


def lock_counter(series: str) -> InvoiceCounter:
    """The series' counter row, created at 0 if new, locked until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO vat_invoice_counters (series, last_number, updated_at)"
            " VALUES (%s, 0, now()) ON CONFLICT (series) DO NOTHING",
            [series],
        )
    return InvoiceCounter.objects.select_for_update().get(series=series)


@transaction.atomic
def issue_vat_invoices(
    *,
    period_start: date,
    period_end: date,
    country: str,
    currency: str | None = None,
    host_id: UUID | str | None = None,
    report: Report | None = None,
    actor: User | None = None,
) -> list[VatInvoice]:
    """Invoice the platform's fee on every charge of the period not invoiced yet: one
    invoice per host and currency, lines per charge, numbered `<series>-<n>` gap-free.

    Gap-free: the series' counter row is locked (SELECT ... FOR UPDATE) before anything is
    read, and the numbers it hands out are written in the same transaction as the invoices.
    If that transaction rolls back, the counter rolls back with it and the numbers are
    issued again next time; if it commits, they are used. A PostgreSQL SEQUENCE would not
    do: nextval() is never rolled back, so a failed issue would leave a hole in the series.
    The lock also serialises issuers, so two jobs never invoice the same charge (and
    vat_invoice_lines' unique ledger_transaction says no if one ever tried).
    """
    rate_bps = vat_rate_bps(country)
    includes_vat = settings.REPORTING_VAT_PRICES_INCLUDE_VAT
    issued_at = timezone.now()
    series = invoice_series(issued_on=issued_at.date())
    with system_context():
        counter = lock_counter(series)
        fees = pd.DataFrame(
            selectors.uninvoiced_fees(
                period_start=period_start,
                period_end=period_end,
                currency=currency,
                host_id=host_id,
            ),
            columns=list(selectors.FEE_COLUMNS),
        )
        if fees.empty:
            return []
        fees["fee_cents"] = fees["fee_cents"].astype("int64")
        fees["host_id"] = fees["host_id"].astype(str)
        amounts = [
            vat_for_fee(fee_cents=int(cents), rate_bps=rate_bps, fee_includes_vat=includes_vat)
            for cents in fees["fee_cents"]
        ]
        fees["net_cents"] = pd.Series([a.net_cents for a in amounts], dtype="int64")
        fees["vat_cents"] = pd.Series([a.vat_cents for a in amounts], dtype="int64")
        fees["gross_cents"] = pd.Series([a.gross_cents for a in amounts], dtype="int64")
        totals = fees.groupby(["host_id", "currency"], sort=True)[
            ["net_cents", "vat_cents", "gross_cents"]
        ].sum()
        hosts = {str(u.pk): u for u in User.objects.filter(pk__in=fees["host_id"].unique())}

        number = counter.last_number
        invoices: list[VatInvoice] = []
        for (host_key, invoice_currency), sums in totals.iterrows():
            number += 1
            host = hosts[host_key]
            invoices.append(
                VatInvoice(
                    series=series,
                    number=number,
                    invoice_number=f"{series}-{number:06d}",
                    host=host,
                    currency=invoice_currency,
                    country=country,
                    rate_bps=rate_bps,
                    prices_include_vat=includes_vat,
                    period_start=period_start,
                    period_end=period_end,
                    net_cents=int(sums["net_cents"]),
                    vat_cents=int(sums["vat_cents"]),
                    gross_cents=int(sums["gross_cents"]),
                    seller=dict(settings.REPORTING_INVOICE_SELLER),
                    buyer={
                        "id": str(host.pk),
                        "name": host.display_name or host.email,
                        "email": host.email,
                        "country": country,
                    },
                    report=report,
                    issued_at=issued_at,
                )
            )
        VatInvoice.objects.bulk_create(invoices)
        by_key = {(str(i.host_id), i.currency): i for i in invoices}
        VatInvoiceLine.objects.bulk_create(
            [
                VatInvoiceLine(
                    invoice=by_key[(line.host_id, line.currency)],
                    host_id=line.host_id,
                    ledger_transaction_id=int(line.transaction_id),
                    reference_id=line.reference_id,
                    description=f"Marketplace service fee, charge {line.reference_id}".strip(),
                    supplied_at=line.supplied_at,
                    rate_bps=rate_bps,
                    net_cents=int(line.net_cents),
                    vat_cents=int(line.vat_cents),
                    gross_cents=int(line.gross_cents),
                )
                for line in fees.itertuples(index=False)
            ]
        )
        counter.last_number = number
        counter.save(update_fields=["last_number", "updated_at"])
        record_audit(
            actor=actor,
            action="vat_invoice.issue",
            target=report,
            details={
                "series": series,
                "invoice_numbers": [i.invoice_number for i in invoices],
                "period_start": period_start.isoformat(),
                "period_end": period_end.isoformat(),
                "lines": len(fees),
            },
        )
    return invoices
