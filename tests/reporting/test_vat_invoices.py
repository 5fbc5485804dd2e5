"""VAT invoices for the platform's fees: worked amounts, gap-free numbers, PDFs.

Worked example at Germany's 19%, the fee including VAT (the default): VAT = fee x 19/119
rounded half up. 10.00 -> VAT 1.60 (159.66 cents), net 8.40; 5.00 -> 0.80 (79.83), net 4.20;
2.00 -> 0.32 (31.93), net 1.68. The invoice: net 14.28, VAT 2.72, gross 17.00 = the fees.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from fractions import Fraction

import pytest
from django.db import DatabaseError, connection
from django.db.models import Max

from ledger.services import reverse_transaction
from reporting import services
from reporting.models import InvoiceCounter, Report, ReportStatus, VatInvoice, VatInvoiceLine
from reporting.storage import open_stored
from reporting.vat import divide_half_up, format_rate, vat_for_fee
from tests.factories import AdminFactory, HostFactory
from treasury.rls import system_context, user_context

from .conftest import at, post_charge, refreshed, stored_text, tag


def test_vat_is_rounded_half_up_in_integers():
    assert divide_half_up(5, 2) == 3
    assert divide_half_up(3, 2) == 2
    assert divide_half_up(1, 4) == 0
    assert divide_half_up(0, 7) == 0
    # 0.50 on top of 19%: 9.5 cents -> 10
    assert vat_for_fee(fee_cents=50, rate_bps=1900, fee_includes_vat=False).vat_cents == 10
    # 0.49 on top: 9.31 -> 9
    assert vat_for_fee(fee_cents=49, rate_bps=1900, fee_includes_vat=False).gross_cents == 58
    included = vat_for_fee(fee_cents=1000, rate_bps=1900, fee_includes_vat=True)
    assert (included.net_cents, included.vat_cents, included.gross_cents) == (840, 160, 1000)
    assert vat_for_fee(fee_cents=1200, rate_bps=0, fee_includes_vat=True).vat_cents == 0
    assert format_rate(1900) == "19.00%" and format_rate(2550) == "25.50%"
    with pytest.raises(ValueError):
        vat_for_fee(fee_cents=-1, rate_bps=1900, fee_includes_vat=True)


@pytest.fixture
def series(settings):
    name = f"T{tag()}"
    settings.REPORTING_INVOICE_SERIES = name + "-{year}"
    return name


def series_numbers(prefix: str) -> list[int]:
    with system_context():
        return sorted(
            VatInvoice.objects.filter(series__startswith=prefix).values_list("number", flat=True)
        )


def vat_report(requester, run_job, report_format="json", **parameters) -> Report:
    parameters = {
        "period_start": at(2025, 1, 1).date(),
        "period_end": at(2025, 1, 31).date(),
        "country": "DE",
        **parameters,
    }
    report = services.request_report(
        requester=requester, report_type="vat_invoice", report_format=report_format, **parameters
    )
    return run_job(report)


@pytest.mark.django_db
def test_invoices_per_host_and_currency_with_exact_vat_and_pdfs(
    series, admin_user, run_job, settings
):
    host, other_host = HostFactory(display_name="Zoë Ørsted"), HostFactory()
    run = tag()
    for n, (fee, day) in enumerate([(1000, 5), (500, 12), (200, 31)]):
        post_charge(
            charge_id=f"ch{n}_{run}",
            host=host,
            currency="USD",
            gross=fee * 10,
            shares={host: fee * 9},
            platform_fee=fee,
            effective_at=at(2025, 1, day, hour=23),
        )
    refunded = post_charge(
        charge_id=f"chr_{run}",
        host=host,
        currency="EUR",
        gross=3000,
        shares={host: 2700},
        platform_fee=300,
        effective_at=at(2025, 1, 20),
    )
    reverse_transaction(transaction=refunded, ratio=Fraction(1, 2), idempotency_key=f"refund:{run}")
    post_charge(  # February: outside the period
        charge_id=f"chf_{run}",
        host=host,
        currency="USD",
        gross=1000,
        shares={host: 900},
        platform_fee=100,
        effective_at=at(2025, 2, 1, hour=0),
    )
    post_charge(
        charge_id=f"cho_{run}",
        host=other_host,
        currency="USD",
        gross=1000,
        shares={other_host: 900},
        platform_fee=100,
        effective_at=at(2025, 1, 2),
    )

    report = vat_report(admin_user, run_job, user_id=host.pk)
    assert report.status == ReportStatus.DONE, report.error
    document = json.loads(stored_text(report))
    invoices = {i["currency"]: i for i in document["invoices"]}
    assert set(invoices) == {"EUR", "USD"}
    usd = invoices["USD"]
    assert [
        (line["net_cents"], line["vat_cents"], line["gross_cents"]) for line in usd["lines"]
    ] == [
        (840, 160, 1000),
        (420, 80, 500),
        (168, 32, 200),
    ]
    assert (usd["net_cents"], usd["vat_cents"], usd["gross_cents"]) == (1428, 272, 1700)
    assert (usd["net"], usd["vat"], usd["gross"], usd["vat_rate"]) == (
        "14.28 USD",
        "2.72 USD",
        "17.00 USD",
        "19.00%",
    )
    # The refund's reversal is not a supply: the EUR invoice has the charge's fee only.
    assert invoices["EUR"]["gross_cents"] == 300 and len(invoices["EUR"]["lines"]) == 1
    assert usd["seller"] == settings.REPORTING_INVOICE_SELLER
    assert usd["buyer"]["id"] == str(host.pk) and usd["buyer"]["country"] == "DE"
    # Numbered 1, 2 in the series: one host, its currencies in order.
    year = usd["issued_at"][:4]
    assert [invoices["EUR"]["invoice_number"], usd["invoice_number"]] == [
        f"{series}-{year}-000001",
        f"{series}-{year}-000002",
    ]
    # ...and the half of it that was refunded is credited: 1.50 of the 3.00 fee.
    [credit] = document["credit_notes"]
    assert (credit["invoice_number"], credit["gross_cents"], credit["currency"]) == (
        invoices["EUR"]["invoice_number"], 150, "EUR",
    )  # fmt: skip
    assert report.row_count == 5

    assert sorted(f["name"] for f in report.files) == sorted(
        [f"{i['invoice_number']}.pdf" for i in invoices.values()] + [credit["pdf"]]
    )
    for stored in report.files:
        with open_stored(stored["location"]) as handle:
            pdf = handle.read()
        assert pdf.startswith(b"%PDF") and len(pdf) == stored["size_bytes"]

    # The other host's own request: the next number; the host sees only their invoice.
    mine = vat_report(other_host, run_job, report_format="csv")
    rows = list(csv.DictReader(io.StringIO(stored_text(mine))))
    assert [(r["invoice_number"], r["buyer_id"], r["gross"]) for r in rows] == [
        (f"{series}-{year}-000003", str(other_host.pk), "1.00 USD")
    ]
    assert rows[0]["net"] == "0.84 USD" and rows[0]["vat"] == "0.16 USD"


@pytest.mark.django_db
def test_a_charge_is_invoiced_once_and_late_charges_get_the_next_number(
    series, host, run_job, settings
):
    run = tag()
    post_charge(
        charge_id=f"a_{run}",
        host=host,
        currency="USD",
        gross=1000,
        shares={host: 900},
        platform_fee=100,
        effective_at=at(2025, 1, 3),
    )
    first = vat_report(host, run_job)
    again = vat_report(host, run_job, report_format="csv")  # not a duplicate: another format
    assert again.pk != first.pk
    assert series_numbers(series) == [1]
    assert json.loads(stored_text(first))["invoices"][0]["invoice_number"].endswith("-000001")
    assert stored_text(again).count("-000001") == 1

    post_charge(  # booked late, dated in the period
        charge_id=f"b_{run}",
        host=host,
        currency="USD",
        gross=2000,
        shares={host: 1800},
        platform_fee=200,
        effective_at=at(2025, 1, 4),
    )
    settings.REPORTING_DEDUPE_SECONDS = 0
    late = vat_report(host, run_job)
    invoices = json.loads(stored_text(late))["invoices"]
    assert [(i["number"], len(i["lines"]), i["gross_cents"]) for i in invoices] == [
        (1, 1, 100),
        (2, 1, 200),
    ]
    assert series_numbers(series) == [1, 2]


@pytest.mark.django_db
def test_a_failed_issue_leaves_no_gap_and_the_retry_takes_the_number(
    series, host, run_job, monkeypatch, sync_jobs, django_capture_on_commit_callbacks
):
    post_charge(
        charge_id=f"x_{tag()}",
        host=host,
        currency="USD",
        gross=1000,
        shares={host: 900},
        platform_fee=100,
        effective_at=at(2025, 1, 3),
    )
    real_bulk_create = VatInvoiceLine.objects.bulk_create

    def broken(*args, **kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(VatInvoiceLine.objects, "bulk_create", broken)
    failed = vat_report(host, run_job)
    assert failed.status == ReportStatus.FAILED
    assert failed.error == "DatabaseError: disk full"
    assert series_numbers(series) == []
    with system_context():
        counter = InvoiceCounter.objects.filter(series__startswith=series).first()
    assert counter is None or counter.last_number == 0

    monkeypatch.setattr(VatInvoiceLine.objects, "bulk_create", real_bulk_create)
    with django_capture_on_commit_callbacks(execute=True):
        services.retry_report(report=failed, actor=host)
    retried = refreshed(failed)
    assert retried.status == ReportStatus.DONE, retried.error
    assert retried.attempts == 2 and retried.error == ""
    assert series_numbers(series) == [1]


@pytest.mark.django_db
def test_issued_invoices_cannot_be_edited_and_hosts_read_only_their_own(
    series, host, run_job, raw_sql
):
    other = HostFactory()
    run = tag()
    for who in (host, other):
        post_charge(
            charge_id=f"{who.pk}_{run}",
            host=who,
            currency="USD",
            gross=1000,
            shares={who: 900},
            platform_fee=100,
            effective_at=at(2025, 1, 3),
        )
        assert vat_report(who, run_job).status == ReportStatus.DONE
    with user_context(host):
        visible = raw_sql("SELECT host_id FROM vat_invoices WHERE series LIKE %s", [f"{series}%"])
        lines = raw_sql("SELECT DISTINCT host_id FROM vat_invoice_lines")
    assert visible == [(host.pk,)]
    assert lines == [(host.pk,)]
    with (
        pytest.raises(DatabaseError, match="append-only"),
        system_context(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE vat_invoices SET gross_cents = 0 WHERE series LIKE %s", [f"{series}%"]
        )


@pytest.mark.xdist_group("reporting-committed")
@pytest.mark.usefixtures("committed_db", "sync_jobs")
def test_concurrent_generation_keeps_numbers_gap_free_and_unique(series):
    """8 threads, 2 per host, each requesting and running its host's VAT report at once
    (django-q2 in sync mode runs the job in the requesting thread, after its commit)."""
    admin = AdminFactory()
    hosts = [HostFactory() for _ in range(4)]
    run = tag()
    for n, who in enumerate(hosts):
        for k in range(3):
            post_charge(
                charge_id=f"cc_{run}_{n}_{k}",
                host=who,
                currency="USD",
                gross=1000 + k,
                shares={who: 900 + k},
                platform_fee=100,
                effective_at=at(2025, 1, 10 + k),
            )
    errors: list[BaseException] = []
    reports: list[int] = []
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            barrier.wait()
            report = services.request_report(
                requester=admin,
                report_type="vat_invoice",
                report_format=("csv", "json")[n % 2],
                period_start=at(2025, 1, 1).date(),
                period_end=at(2025, 1, 31).date(),
                country="IE",
                user_id=hosts[n // 2].pk,
            )
            reports.append(report.pk)
        except BaseException as exc:  # asserted on below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert errors == []
    with system_context():
        done = Report.objects.filter(pk__in=reports)
        assert [(r.status, r.error) for r in done] == [(ReportStatus.DONE, "")] * 8
        invoices = list(VatInvoice.objects.filter(series__startswith=series))
        assert sorted(i.number for i in invoices) == [1, 2, 3, 4]
        assert len({i.invoice_number for i in invoices}) == 4
        assert sorted(str(i.host_id) for i in invoices) == sorted(str(h.pk) for h in hosts)
        assert all(i.gross_cents == 300 and i.lines.count() == 3 for i in invoices)
        counter = InvoiceCounter.objects.get(series=invoices[0].series)
        assert counter.last_number == 4
        assert VatInvoice.objects.filter(series=counter.series).aggregate(m=Max("number"))["m"] == 4


# --- credit notes: invoices less credit notes are the fee the books keep ---


def fee_kept(charge_txn) -> int:
    """The charge's platform fee the ledger keeps: its credit to fee revenue less what the
    postings that refer to it (reversals, refunds) took back."""
    from disputes.models import Refund
    from ledger.models import LedgerEntry, LedgerTransaction

    with system_context():
        related = {charge_txn.pk}
        related |= set(
            LedgerTransaction.objects.filter(reverses=charge_txn).values_list("id", flat=True)
        )
        for refund in Refund.objects.filter(charge_id=charge_txn.reference_id):
            related |= {refund.ledger_transaction_id, refund.failure_transaction_id} - {None}
        entries = LedgerEntry.objects.filter(
            transaction_id__in=related, account__code__startswith="platform:fee_revenue:"
        )
        return sum(e.amount_cents if e.type == "credit" else -e.amount_cents for e in entries)


def documents(report) -> tuple[list[dict], list[dict]]:
    document = json.loads(stored_text(report))
    return document["invoices"], document["credit_notes"]


@pytest.mark.django_db
def test_a_partial_refund_after_the_invoice_is_credited_and_totals_match_the_ledger(
    series, host, run_job, settings
):
    """Fee 2.50 at 19% included: invoiced net 2.10, VAT 0.40. 1.00 of it refunded: the
    fee kept, 1.50, would be invoiced net 1.26, VAT 0.24, so the credit note is net 0.84,
    VAT 0.16, gross 1.00. Then the rest: net 1.26, VAT 0.24, gross 1.50."""
    settings.REPORTING_DEDUPE_SECONDS = 0
    charge_id = f"ch_3MtwBwLkdIwHu7ix28a3tqPa{tag()}"
    charge = post_charge(
        charge_id=charge_id,
        host=host,
        currency="USD",
        gross=2500,
        shares={host: 2250},
        platform_fee=250,
        effective_at=at(2025, 1, 10),
    )
    first = vat_report(host, run_job)
    invoices, notes = documents(first)
    assert [(i["net_cents"], i["vat_cents"], i["gross_cents"]) for i in invoices] == [
        (210, 40, 250)
    ]
    assert notes == []

    reverse_transaction(
        transaction=charge, ratio=Fraction(2, 5), idempotency_key=f"refund:{charge_id}:1"
    )
    assert fee_kept(charge) == 150
    second = vat_report(host, run_job)
    invoices, notes = documents(second)
    year = invoices[0]["issued_at"][:4]
    [note] = notes
    assert (note["net_cents"], note["vat_cents"], note["gross_cents"], note["fee_cents"]) == (
        84, 16, 100, 100,
    )  # fmt: skip
    assert note["credit_note_number"] == f"{series}-{year}-CN-000001"
    assert note["invoice_number"] == invoices[0]["invoice_number"]
    assert note["lines"][0]["reference_id"] == charge_id
    assert charge_id in note["lines"][0]["description"]
    assert invoices[0]["gross_cents"] - note["gross_cents"] == fee_kept(charge)

    # Nothing new taken back: nothing new credited.
    assert documents(vat_report(host, run_job))[1] == notes

    reverse_transaction(transaction=charge, idempotency_key=f"refund:{charge_id}:2")
    rest = vat_report(host, run_job, report_format="csv")
    rows = list(csv.DictReader(io.StringIO(stored_text(rest))))
    assert [
        (r["document"], r["invoice_number"], r["credits_invoice"], r["gross_cents"]) for r in rows
    ] == [
        ("invoice", invoices[0]["invoice_number"], "", "250"),
        ("credit_note", f"{series}-{year}-CN-000001", invoices[0]["invoice_number"], "-100"),
        ("credit_note", f"{series}-{year}-CN-000002", invoices[0]["invoice_number"], "-150"),
    ]
    assert [(r["net_cents"], r["vat_cents"]) for r in rows[1:]] == [("-84", "-16"), ("-126", "-24")]
    assert sum(int(r["gross_cents"]) for r in rows) == fee_kept(charge) == 0
    assert sum(int(r["vat_cents"]) for r in rows) == 0
    assert rest.row_count == 3
    assert sorted(f["name"] for f in rest.files) == sorted(
        [
            f"{invoices[0]['invoice_number']}.pdf",
            f"{series}-{year}-CN-000001.pdf",
            f"{series}-{year}-CN-000002.pdf",
        ]
    )


@pytest.mark.django_db
def test_credit_notes_are_numbered_gap_free_per_series_and_append_only(series, run_job, settings):
    settings.REPORTING_DEDUPE_SECONDS = 0
    hosts = [HostFactory(), HostFactory()]
    charges = [
        post_charge(
            charge_id=f"cn{n}_{tag()}",
            host=who,
            currency="USD",
            gross=1000,
            shares={who: 900},
            platform_fee=100,
            effective_at=at(2025, 1, 5),
        )
        for n, who in enumerate(hosts)
    ]
    admin = AdminFactory()
    vat_report(admin, run_job)
    for n, charge in enumerate(charges):
        reverse_transaction(
            transaction=charge, ratio=Fraction(1, 2), idempotency_key=f"r{n}{tag()}"
        )
    _, notes = documents(vat_report(admin, run_job))
    assert [n["number"] for n in notes] == [1, 2]
    assert sorted(n["buyer"]["id"] for n in notes) == sorted(str(h.pk) for h in hosts)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        system_context(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE vat_credit_notes SET gross_cents = 0 WHERE series LIKE %s", [f"{series}%"]
        )
    # A host reads only their own credit notes.
    from reporting.models import VatCreditNote

    with user_context(hosts[0]):
        assert [
            str(n.host_id) for n in VatCreditNote.objects.filter(series__startswith=series)
        ] == [str(hosts[0].pk)]


@pytest.mark.django_db
def test_invoice_and_credit_note_pdfs_print_whole_charge_ids(series, host, run_job, settings):
    from reporting.generators.invoice_pdf import render_credit_note_pdf, render_invoice_pdf
    from reporting.models import VatCreditNote

    settings.REPORTING_DEDUPE_SECONDS = 0
    long_id = f"ch_3PqRsTuVwXyZ0123456789{tag()}"
    charge = post_charge(
        charge_id=long_id,
        host=host,
        currency="USD",
        gross=2500,
        shares={host: 2250},
        platform_fee=250,
        effective_at=at(2025, 1, 10),
    )
    vat_report(host, run_job)
    reverse_transaction(transaction=charge, ratio=Fraction(1, 5), idempotency_key=f"r{tag()}")
    vat_report(host, run_job)
    with system_context():
        invoice = VatInvoice.objects.get(lines__reference_id=long_id)
        note = VatCreditNote.objects.get(invoice=invoice)
        invoice_pdf = render_invoice_pdf(invoice, compress=False)
        note_pdf = render_credit_note_pdf(note, compress=False)
    # The description was cut at 44 characters: "Marketplace service fee, charge ch_3PqRsTuVw".
    assert long_id.encode() in invoice_pdf
    assert long_id.encode() in note_pdf
    assert invoice.invoice_number.encode() in note_pdf
