"""Report files round-trip through both storages: a local folder, and S3 (a moto server on
127.0.0.1 speaking S3's REST API to django-storages' S3 backend through boto3)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from reporting import services
from reporting.models import ReportStatus

from .conftest import at, post_charge, tag

pytestmark = pytest.mark.django_db

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, settings) -> tuple[object, str]:
    bucket = f"reports-{tag()}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **CREDENTIALS)
    client.create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "reports": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "access_key": CREDENTIALS["aws_access_key_id"],
                "secret_key": CREDENTIALS["aws_secret_access_key"],
                "file_overwrite": True,
            },
        },
    }
    return client, bucket


def vat_report_with_pdf(host, client_for, run_job, settings):
    """A VAT report (a CSV and an invoice PDF), generated and downloaded through the API."""
    settings.REPORTING_INVOICE_SERIES = f"S{tag()}"
    post_charge(
        charge_id=f"s3_{tag()}",
        host=host,
        currency="USD",
        gross=1000,
        shares={host: 900},
        platform_fee=100,
        effective_at=at(2025, 5, 5),
    )
    report = services.request_report(
        requester=host,
        report_type="vat_invoice",
        report_format="csv",
        period_start=at(2025, 5, 1).date(),
        period_end=at(2025, 5, 31).date(),
    )
    report = run_job(report)
    assert report.status == ReportStatus.DONE, report.error
    api = client_for(host)
    main = b"".join(api.get(f"/api/reports/download/{report.pk}").streaming_content)
    pdf_name = report.files[0]["name"]
    pdf = b"".join(api.get(f"/api/reports/download/{report.pk}?file={pdf_name}").streaming_content)
    return report, main, pdf


def test_report_files_round_trip_through_s3(s3_bucket, host, client_for, run_job, settings):
    client, bucket = s3_bucket
    report, main, pdf = vat_report_with_pdf(host, client_for, run_job, settings)

    stored = client.get_object(Bucket=bucket, Key=report.location)["Body"].read()
    assert stored == main
    assert hashlib.sha256(main).hexdigest() == report.checksum_sha256
    assert len(main) == report.size_bytes
    assert b"1.00 USD" in main
    (pdf_file,) = report.files
    assert client.get_object(Bucket=bucket, Key=pdf_file["location"])["Body"].read() == pdf
    assert (
        pdf.startswith(b"%PDF") and hashlib.sha256(pdf).hexdigest() == pdf_file["checksum_sha256"]
    )
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {report.location, pdf_file["location"]}


def test_report_files_round_trip_through_a_local_folder(
    report_files: Path, host, client_for, run_job, settings
):
    report, main, pdf = vat_report_with_pdf(host, client_for, run_job, settings)

    assert (report_files / report.location).read_bytes() == main
    assert hashlib.sha256(main).hexdigest() == report.checksum_sha256
    assert (report_files / report.files[0]["location"]).read_bytes() == pdf
