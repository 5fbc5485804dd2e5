"""The back office: reports and invoices are looked at; a failed report is retried."""

from __future__ import annotations

import pytest
from django.test import Client

from reporting import services
from reporting.models import ReportStatus
from tests.factories import DEFAULT_PASSWORD
from treasury.models import AuditLog
from treasury.rls import system_context

from .conftest import at, post_charge, refreshed, tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    assert client.login(email=admin_user.email, password=DEFAULT_PASSWORD)
    return client


@pytest.mark.usefixtures("sync_jobs")
def test_a_failed_report_is_retried_from_the_admin(
    admin_client, admin_user, host, run_job, django_capture_on_commit_callbacks, monkeypatch
):
    from reporting.generators import earnings_1099

    real = earnings_1099.generate
    monkeypatch.setattr(earnings_1099, "generate", lambda **kwargs: 1 / 0)
    report = run_job(
        services.request_report(
            requester=host, report_type="1099", report_format="csv", tax_year=2024
        )
    )
    assert report.status == ReportStatus.FAILED
    page = admin_client.get("/admin/reporting/report/?status__exact=failed")
    assert page.status_code == 200
    assert report in page.context["cl"].result_list

    monkeypatch.setattr(earnings_1099, "generate", real)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/reporting/report/",
            {"action": "retry_failed", "_selected_action": [report.pk]},
        )
    assert response.status_code == 302
    assert refreshed(report).status == ReportStatus.DONE
    with system_context():
        assert AuditLog.objects.filter(
            action="report.retry", user=admin_user, target_id=str(report.pk)
        ).exists()


def test_invoices_are_listed_read_only(admin_client, host, run_job, settings):
    settings.REPORTING_INVOICE_SERIES = f"ADM{tag()}"
    post_charge(
        charge_id=f"adm_{tag()}",
        host=host,
        currency="USD",
        gross=1000,
        shares={host: 900},
        platform_fee=100,
        effective_at=at(2025, 1, 3),
    )
    run_job(
        services.request_report(
            requester=host,
            report_type="vat_invoice",
            report_format="csv",
            period_start=at(2025, 1, 1).date(),
            period_end=at(2025, 1, 31).date(),
        )
    )
    page = admin_client.get(f"/admin/reporting/vatinvoice/?q={settings.REPORTING_INVOICE_SERIES}")
    assert page.status_code == 200
    (invoice,) = page.context["cl"].result_list
    detail = admin_client.get(f"/admin/reporting/vatinvoice/{invoice.pk}/change/")
    assert detail.status_code == 200
    assert detail.context["has_change_permission"] is False
