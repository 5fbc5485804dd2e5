"""/api/reports: request, watch, download; bad input gets a clear 4xx."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.utils import timezone

from reporting import services
from reporting.models import Report
from tests.factories import HostFactory
from treasury.models import AuditLog
from treasury.rls import system_context, user_context

from .conftest import at, post_charge, refreshed, tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def a_sale(host):
    post_charge(
        charge_id=f"api_{tag()}",
        host=host,
        currency="USD",
        gross=1000,
        shares={host: 900},
        platform_fee=100,
        effective_at=at(timezone.now().year, 1, 5),
    )


def generate(client, django_capture_on_commit_callbacks, **body):
    """POST /api/reports/generate; the queued job runs (sync) once the request commits."""
    with django_capture_on_commit_callbacks(execute=True):
        return client.post("/api/reports/generate", body, format="json")


@pytest.mark.usefixtures("sync_jobs", "a_sale")
def test_a_report_is_queued_then_shown_done_and_downloaded(
    client_for, host, django_capture_on_commit_callbacks
):
    client = client_for(host)
    year = timezone.now().year
    response = generate(
        client, django_capture_on_commit_callbacks, type="1099", format="json", tax_year=year
    )

    assert response.status_code == 202, response.json()
    queued = response.json()
    assert queued["status"] == "queued" and queued["deduplicated"] is False
    assert queued["url"] == f"/api/reports/{queued['id']}"

    shown = client.get(f"/api/reports/{queued['id']}").json()
    assert (shown["status"], shown["progress"], shown["attempts"]) == ("done", 100, 1)
    assert shown["row_count"] == 1
    assert shown["parameters"] == {"tax_year": year, "currency": None, "user_id": str(host.pk)}
    assert shown["download_url"] == f"/api/reports/download/{queued['id']}"

    download = client.get(shown["download_url"])
    assert download.status_code == 200
    assert download["Content-Type"] == "application/json"
    assert download["Content-Disposition"] == (
        f'attachment; filename="1099-{year}-report-{queued["id"]}.json"'
    )
    content = b"".join(download.streaming_content)
    assert hashlib.sha256(content).hexdigest() == shown["checksum_sha256"]
    assert len(content) == shown["size_bytes"]
    assert json.loads(content)["payees"][0]["gross"] == "9.00 USD"
    with system_context():
        assert AuditLog.objects.filter(
            action="report.download", target_id=str(queued["id"]), user=host
        ).exists()


def test_identical_requests_return_the_same_report(client_for, host, settings):
    client = client_for(host)
    body = {"type": "ledger_export", "format": "csv", "period_start": "2025-01-01"}

    first = client.post("/api/reports/generate", body, format="json")
    second = client.post("/api/reports/generate", body, format="json")
    other = client.post("/api/reports/generate", {**body, "format": "json"}, format="json")

    assert first.status_code == 202 and second.status_code == 200
    assert second.json()["id"] == first.json()["id"] and second.json()["deduplicated"] is True
    assert other.json()["id"] != first.json()["id"]

    settings.REPORTING_DEDUPE_SECONDS = 0  # outside the window: a new report
    assert (
        client.post("/api/reports/generate", body, format="json").json()["id"]
        != (first.json()["id"])
    )


@pytest.mark.usefixtures("sync_jobs")
def test_the_deprecated_get_generate_still_works(
    client_for, host, django_capture_on_commit_callbacks
):
    client = client_for(host)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(
            "/api/reports/generate?type=ledger_export&format=json&period_start=2025-01-01"
            "&period_end=2025-01-31"
        )

    assert response.status_code == 202
    assert response["Deprecation"] == "true"
    report = client.get(response.json()["url"]).json()
    assert report["status"] == "done"
    assert report["parameters"]["period_end"] == "2025-01-31"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"type": "1040", "format": "csv"}, "type", '"1040" is not a valid choice.'),
        ({"type": "1099", "format": "pdf", "tax_year": 2024}, "format", '"pdf" is not a valid'),
        (
            {"type": "vat_invoice", "period_start": "2025-02-01", "period_end": "2025-01-31"},
            "period_end",
            "the period ends (2025-01-31) before it starts (2025-02-01)",
        ),
        ({"type": "vat_invoice", "period_start": "2025-02-01"}, "period_end", "need a period"),
        ({"type": "1099", "tax_year": 2999}, "tax_year", "tax year 2999 is in the future"),
        ({"type": "1099"}, "tax_year", "tax_year is required"),
        ({"type": "1099", "tax_year": 2024, "currency": "ZZZ"}, "currency", "unknown currency"),
        (
            {"type": "vat_invoice", "period_start": "2025-01-01", "period_end": "2025-01-31",
             "country": "XX"},
            "country",
            "no VAT rate is configured for country 'XX'",
        ),
        (
            {"type": "1099", "tax_year": 2024, "period_start": "2024-01-01"},
            "period_start",
            "period_start does not apply to 1099 reports",
        ),
        ({"type": "ledger_export", "period_start": "2025-13-01"}, "period_start", "Date has"),
    ],
)  # fmt: skip
def test_bad_requests_are_a_clear_400_and_store_nothing(client_for, host, body, field, message):
    response = client_for(host).post("/api/reports/generate", body, format="json")

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"], error
    assert message in error["message"], error
    with system_context():
        assert not Report.objects.filter(user=host).exists()


def test_a_user_cannot_request_another_users_report(client_for, host, artist):
    response = client_for(host).post(
        "/api/reports/generate",
        {"type": "1099", "tax_year": 2024, "user": str(artist.pk)},
        format="json",
    )

    assert response.status_code == 404  # as another user's object is (README, API conventions)
    assert response.json()["error"]["fields"] == {"user": ["not found"]}


def test_another_users_report_is_a_404_and_admins_see_all(client_for, host, admin_user):
    report = services.request_report(
        requester=host, report_type="1099", report_format="csv", tax_year=2024
    )
    stranger = client_for(HostFactory())

    for path in (f"/api/reports/{report.pk}", f"/api/reports/download/{report.pk}"):
        response = stranger.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert stranger.post(f"/api/reports/{report.pk}/retry").status_code == 404
    assert report.pk not in [r["id"] for r in stranger.get("/api/reports").json()["results"]]

    admin = client_for(admin_user)
    assert admin.get(f"/api/reports/{report.pk}").json()["user_id"] == str(host.pk)
    assert report.pk in [r["id"] for r in admin.get("/api/reports?type=1099").json()["results"]]


def test_reports_rows_are_filtered_by_row_level_security(host, artist, raw_sql):
    mine = services.request_report(
        requester=host, report_type="1099", report_format="csv", tax_year=2024
    )
    services.request_report(
        requester=artist, report_type="1099", report_format="csv", tax_year=2024
    )

    with user_context(host):
        assert raw_sql("SELECT id FROM reports") == [(mine.pk,)]
    with pytest.raises(Exception, match="row-level security"), user_context(host):
        raw_sql(
            "INSERT INTO reports (user_id, type, format, status, parameters, dedupe_key,"
            " location, filename, content_type, files, checksum_sha256, progress_percent,"
            " error, attempts, task_id, created_at, updated_at) VALUES (%s, '1099', 'csv',"
            " 'done', '{}', 'x', 'x', 'x', 'x', '[]', '', 100, '', 0, '', now(), now())",
            [host.pk],
        )


def test_downloading_a_report_not_done_is_a_409_with_its_status(client_for, host):
    report = services.request_report(
        requester=host, report_type="1099", report_format="csv", tax_year=2024
    )
    client = client_for(host)

    queued = client.get(f"/api/reports/download/{report.pk}")
    assert queued.status_code == 409
    assert queued.json()["status"] == "queued"
    assert queued.json()["error"]["code"] == "report_not_ready"

    services.claim_report(report_id=report.pk)
    running = client.get(f"/api/reports/download/{report.pk}")
    assert running.status_code == 409
    assert running.json()["status"] == "running"
    assert "is running (0%)" in running.json()["error"]["message"]


@pytest.mark.usefixtures("sync_jobs")
def test_a_failed_job_records_its_error_and_can_be_retried(
    client_for, host, monkeypatch, django_capture_on_commit_callbacks
):
    from reporting.generators import earnings_1099

    real = earnings_1099.generate

    def broken(**kwargs):
        raise RuntimeError("storage unreachable")

    monkeypatch.setattr(earnings_1099, "generate", broken)
    client = client_for(host)
    response = generate(client, django_capture_on_commit_callbacks, type="1099", tax_year=2024)
    report_id = response.json()["id"]

    failed = client.get(f"/api/reports/{report_id}").json()
    assert (failed["status"], failed["error"]) == ("failed", "RuntimeError: storage unreachable")
    download = client.get(f"/api/reports/download/{report_id}")
    assert download.status_code == 409 and download.json()["status"] == "failed"
    assert "storage unreachable" in download.json()["error"]["message"]
    # An identical request does not return the failed report.
    again = client.post("/api/reports/generate", {"type": "1099", "tax_year": 2024}, format="json")
    assert again.json()["id"] != report_id

    monkeypatch.setattr(earnings_1099, "generate", real)
    with django_capture_on_commit_callbacks(execute=True):
        retried = client.post(f"/api/reports/{report_id}/retry")
    assert retried.status_code == 202
    done = client.get(f"/api/reports/{report_id}").json()
    assert (done["status"], done["error"], done["attempts"]) == ("done", "", 2)
    assert client.post(f"/api/reports/{report_id}/retry").status_code == 409
    with system_context():
        assert AuditLog.objects.filter(action="report.retry", target_id=str(report_id)).exists()


@pytest.mark.usefixtures("sync_jobs")
def test_an_admin_requests_a_vat_report_and_downloads_an_invoice_pdf(
    client_for, host, admin_user, django_capture_on_commit_callbacks, settings
):
    settings.REPORTING_INVOICE_SERIES = f"A{tag()}"
    post_charge(
        charge_id=f"pdf_{tag()}",
        host=host,
        currency="EUR",
        gross=5000,
        shares={host: 4500},
        platform_fee=500,
        effective_at=at(2025, 3, 3),
    )
    client = client_for(admin_user)
    response = generate(
        client,
        django_capture_on_commit_callbacks,
        type="vat_invoice",
        format="csv",
        period_start="2025-03-01",
        period_end="2025-03-31",
        user=str(host.pk),
        country="FR",
    )
    report = client.get(response.json()["url"]).json()
    assert report["status"] == "done", report["error"]
    (pdf,) = report["files"]
    assert pdf["name"] == f"{settings.REPORTING_INVOICE_SERIES}-000001.pdf"

    download = client.get(pdf["download_url"])
    assert download.status_code == 200
    assert download["Content-Type"] == "application/pdf"
    assert b"".join(download.streaming_content).startswith(b"%PDF")
    assert client.get(f"/api/reports/download/{report['id']}?file=nope.pdf").status_code == 404
    csv_text = b"".join(client.get(report["download_url"]).streaming_content).decode()
    assert "5.00 EUR" in csv_text and "20.00%" in csv_text  # 5.00 incl. 20% VAT: 0.83
    assert refreshed(Report(pk=report["id"])).row_count == 1
