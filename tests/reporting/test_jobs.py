"""The queued job really runs in a django-q2 cluster (`manage.py qcluster` in a subprocess,
ORM broker on the test database), on committed rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from django_q.models import Task

from reporting import services
from reporting.models import ReportStatus
from tests.factories import HostFactory
from tests.rls import set_raw_context

from .conftest import at, post_charge, refreshed, tag

BASE_DIR = Path(settings.BASE_DIR)


@pytest.mark.xdist_group("reporting-committed")
@pytest.mark.usefixtures("committed_db")
def test_a_queued_report_is_generated_by_the_qcluster(report_files, tmp_path):
    host = HostFactory()
    post_charge(
        charge_id=f"q_{tag()}",
        host=host,
        currency="USD",
        gross=2500,
        shares={host: 2250},
        platform_fee=250,
        effective_at=at(2025, 2, 2),
    )
    # Committed at once (autocommit), so the job is queued in the ORM broker right away.
    report = services.request_report(
        requester=host, report_type="1099", report_format="csv", tax_year=2025
    )
    assert refreshed(report).task_id

    env = {
        **os.environ,
        "TREASURY_DATABASE_NAME": connections["default"].settings_dict["NAME"],
        "REPORTING_FILES_DIR": str(report_files),
        "TREASURY_CACHE_DIR": str(tmp_path / "cache"),
        "Q_WORKERS": "1",
    }
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: stopped with its workers below
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not refreshed(report).is_finished:
            assert cluster.poll() is None, cluster.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            time.sleep(0.5)
    finally:
        cluster.send_signal(signal.SIGTERM)  # the sentinel stops its workers, then itself
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait(timeout=30)

    done = refreshed(report)
    assert done.status == ReportStatus.DONE, done.error
    assert done.row_count == 1
    assert "22.50 USD" in (report_files / done.location).read_text()
    assert Task.objects.filter(id=done.task_id, success=True).exists()


@pytest.mark.xdist_group("reporting-committed")
@pytest.mark.usefixtures("committed_db")
def test_progress_is_visible_while_the_job_holds_its_transaction(monkeypatch, runtime_connection):
    from django.db import transaction

    from reporting.progress import Progress

    monkeypatch.setattr(services, "enqueue_report", lambda *, report_id: "")
    host = HostFactory()
    report = services.request_report(
        requester=host, report_type="1099", report_format="csv", tax_year=2024
    )
    services.claim_report(report_id=report.pk)

    with transaction.atomic(), Progress(report.pk) as progress:  # a generator's long read
        progress.fraction(3, 4, start=20, end=100)
        progress.update(10)  # never backwards
        with runtime_connection.transaction():  # another connection sees it at once
            set_raw_context(runtime_connection)
            (seen,) = runtime_connection.execute(
                "SELECT progress_percent FROM reports WHERE id = %s", [report.pk]
            ).fetchone()
    assert seen == 80
    assert refreshed(report).progress_percent == 80
