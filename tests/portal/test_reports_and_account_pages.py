"""Reports from the page (requested, prepared by their job, downloaded through the
session) and the Stripe onboarding link."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reporting.models import Report
from reporting.tasks import generate_report
from tests.stripe.conftest import stripe_settings, stripe_standin  # noqa: F401  (fixtures)
from treasury.rls import system_context
from treasury.stripe.models import StripeAccount

from .conftest import book_sale, completed_account, footprint

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def report_files(settings: Any, tmp_path: Path) -> Path:
    folder = tmp_path / "report-files"
    settings.STORAGES = {
        **settings.STORAGES,
        "reports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }
    return folder


def reports_of(user) -> list[Report]:
    with system_context():
        return list(Report.objects.filter(user=user).order_by("id"))


def test_a_1099_report_is_requested_prepared_and_downloaded(signed_in, host):
    year = datetime.now(UTC).year
    book_sale(host, 10000)
    client = signed_in(host)
    form = {"report": "1099", "t1099-tax_year": str(year), "t1099-format": "csv"}
    response = client.post("/me/reports/", form)
    assert (response.status_code, response["Location"]) == (302, "/me/reports/")
    [report] = reports_of(host)
    assert (report.type, report.status) == ("1099", "queued")
    assert report.parameters["tax_year"] == year
    assert report.parameters["user_id"] == str(host.pk)
    waiting = client.get("/me/reports/").content
    assert b"is being prepared" in waiting and b'http-equiv="refresh"' in waiting

    again = client.post("/me/reports/", form)  # a double click: the same report
    assert again.status_code == 302 and len(reports_of(host)) == 1

    generate_report(report.pk)  # what the django-q2 cluster does
    page = client.get(f"/me/reports/{report.pk}/").content.decode()
    link = f"/api/reports/download/{report.pk}"
    assert f'href="{link}"' in page and "Done" in page
    download = client.get(link)
    assert download.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert [(r["payee_id"], r["currency"], r["gross_cents"]) for r in rows] == [
        (str(host.pk), "USD", "10000")
    ]


def test_vat_invoices_come_with_a_pdf_each(signed_in, host):
    book_sale(host, 9000, platform_fee_cents=1000)
    today = datetime.now(UTC).date().isoformat()
    client = signed_in(host)
    response = client.post(
        "/me/reports/",
        {"report": "vat_invoice", "vat-period_start": today, "vat-period_end": today,
         "vat-country": "DE", "vat-format": "csv"},
    )  # fmt: skip
    assert response.status_code == 302
    [report] = reports_of(host)
    generate_report(report.pk)
    page = client.get(f"/me/reports/{report.pk}/").content.decode()
    [pdf_name] = [f["name"] for f in reports_of(host)[0].files]
    assert pdf_name.endswith(".pdf") and pdf_name in page
    pdf = client.get(f"/api/reports/download/{report.pk}", {"file": pdf_name})
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert b"".join(pdf.streaming_content).startswith(b"%PDF")


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"report": "vat_invoice", "vat-period_start": "2026-02-01",
             "vat-period_end": "2026-01-01", "vat-format": "csv"},
            "must not be before the start",
        ),
        (
            {"report": "vat_invoice", "vat-period_start": "2026-02-01", "vat-format": "csv"},
            "This field is required.",
        ),
        ({"report": "1099", "t1099-tax_year": "2999", "t1099-format": "csv"}, "valid choice"),
        (
            {"report": "1099", "t1099-tax_year": "2024", "t1099-format": "csv",
             "t1099-currency": "ZZZ"},
            "unknown currency",
        ),
    ],
)  # fmt: skip
def test_a_bad_report_request_is_a_field_error_and_changes_nothing(signed_in, host, form, message):
    before = footprint()
    response = signed_in(host).post("/me/reports/", form)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert footprint() == before


def test_the_onboarding_button_creates_the_account_and_goes_to_stripe(
    signed_in,
    host,
    stripe_settings,  # noqa: F811
):
    client = signed_in(host)
    assert b"Set up payouts with Stripe" in client.get("/me/account/").content
    response = client.post("/me/account/onboard/")
    with system_context():
        account = StripeAccount.objects.get(user=host)
    assert response.status_code == 302
    assert response["Location"].startswith(
        f"{stripe_settings.base_url}/_standin/onboard/{account.stripe_account_id}"
    )
    page = client.get("/me/account/").content.decode()
    assert account.stripe_account_id in page and "Continue onboarding" in page
    assert 'data-testid="onboarding-status">Pending<' in page


def test_a_completed_account_needs_no_onboarding(signed_in, host):
    account = completed_account(host)
    client = signed_in(host)
    page = client.get("/me/account/").content.decode()
    assert "payouts are enabled" in page and "Continue onboarding" not in page
    response = client.post("/me/account/onboard/")
    assert (response.status_code, response["Location"]) == (302, "/me/account/")
    assert "Onboarding is completed." in client.get("/me/account/").content.decode()
    assert account.stripe_account_id in page
