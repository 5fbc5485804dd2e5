"""`manage.py reconcile_stripe` exit codes and output, the nightly jobs and their django-q2
schedules, and row-level security on the monitoring tables."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

from monitoring import tasks
from monitoring.models import (
    Alert,
    AlertSeverity,
    ReconciliationRun,
    RunStatus,
    VerificationRun,
)
from monitoring.schedules import CHECKS, RECONCILE, VERIFY
from monitoring.services import day_bounds, previous_day, raise_alert
from tests.disputes.conftest import sell
from tests.factories import HostFactory
from treasury.rls import ContextRole, rls_context, system_context, user_context

pytestmark = pytest.mark.django_db

TABLES = (
    "monitoring_reconciliation_runs",
    "monitoring_reconciliation_differences",
    "monitoring_verification_runs",
    "alerts",
)


def run_command(*args: str, stderr: StringIO | None = None) -> tuple[str, int]:
    out = StringIO()
    try:
        call_command("reconcile_stripe", *args, stdout=out, stderr=stderr or StringIO())
    except CommandError as exc:
        return out.getvalue() + str(exc), exc.returncode
    return out.getvalue(), 0


def test_a_quiet_day_reconciles_with_exit_code_0(stripe_settings):
    progress = StringIO()
    output, code = run_command(
        "--from", "2001-01-01", "--to", "2001-01-02", "-v", "2", stderr=progress
    )

    assert code == 0 and "reconciled: no differences" in output
    bars = progress.getvalue()
    assert "stripe       [" in bars and "compare      [##############################] 100%" in bars
    with system_context():
        run = ReconciliationRun.objects.latest("id")
    assert (run.status, run.period_label) == (RunStatus.CLEAN, "2001-01-01..2001-01-02")
    assert run.period_start == datetime(2001, 1, 1, tzinfo=UTC)
    assert run.period_end == datetime(2001, 1, 3, tzinfo=UTC)


def test_differences_are_listed_with_exit_code_1(stripe_settings):
    missing = sell(stripe_settings, amount_cents=1200, host=HostFactory(), book=False)
    today = timezone.now().date().isoformat()

    output, code = run_command("--from", today, "--to", today)

    assert code == 1
    [line] = [line for line in output.splitlines() if missing in line]
    assert line.startswith(f"missing_in_ledger: charge:{missing}; stripe txn_")
    assert "the ledger does not reconcile with Stripe" in output


def test_stripe_unreachable_is_exit_code_2_and_a_warning_mail(
    stripe_settings, settings, sync_jobs, django_capture_on_commit_callbacks
):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    settings.SLACK_WEBHOOK_URL = ""
    settings.OPS_EMAILS = ["ops@treasury.test"]

    with django_capture_on_commit_callbacks(execute=True):
        output, code = run_command("--from", "2002-02-02")

    assert code == 2 and "Stripe could not be read" in output
    with system_context():
        run = ReconciliationRun.objects.latest("id")
        warning = Alert.objects.get(key="reconciliation-error:2002-02-02..2002-02-02")
    assert run.status == RunStatus.ERROR and warning.severity == AlertSeverity.WARNING
    [message] = [m for m in mail.outbox if "2002-02-02" in m.subject]
    assert message.subject.startswith("[Treasury warning] Stripe reconciliation")
    assert message.to == ["ops@treasury.test"]


def test_bad_dates_are_exit_code_2():
    assert run_command("--from", "2026-13-01")[1] == 2
    output, code = run_command("--from", "2026-02-02", "--to", "2026-02-01")
    assert code == 2 and "at or after it ends" in output


def test_the_nightly_reconciliation_covers_the_previous_utc_day(stripe_settings, monkeypatch):
    monkeypatch.setattr(
        "monitoring.services.previous_day", lambda now=None: date(2003, 3, 3), raising=True
    )
    summary = tasks.reconcile_previous_day()

    with system_context():
        run = ReconciliationRun.objects.get(pk=summary["run"])
    assert (run.trigger, run.status, run.period_label) == (
        "schedule",
        RunStatus.CLEAN,
        "2003-03-03..2003-03-03",
    )
    assert day_bounds(date(2003, 3, 3), date(2003, 3, 3)) == (
        datetime(2003, 3, 3, tzinfo=UTC),
        datetime(2003, 3, 4, tzinfo=UTC),
    )
    assert previous_day(datetime(2026, 1, 1, 0, 30, tzinfo=UTC)) == date(2025, 12, 31)


def test_the_nightly_verification_is_recorded_for_the_dashboard():
    summary = tasks.verify_ledger()

    with system_context():
        from monitoring.selectors import last_verification

        last = last_verification()
    assert last is not None and last.pk == summary["run"]
    assert (last.trigger, last.status, last.finished_at is not None) == (
        "schedule",
        RunStatus.CLEAN,
        True,
    )


def test_the_schedules_exist_once_after_migrating():
    rows = {s.name: s for s in Schedule.objects.filter(name__in=[VERIFY, RECONCILE, CHECKS])}
    assert {name: rows[name].func for name in rows} == {
        VERIFY: "monitoring.tasks.verify_ledger",
        RECONCILE: "monitoring.tasks.reconcile_previous_day",
        CHECKS: "monitoring.tasks.run_checks",
    }
    assert rows[VERIFY].schedule_type == rows[RECONCILE].schedule_type == "D"
    assert rows[CHECKS].schedule_type == "I" and rows[CHECKS].minutes == 5
    call_command("setup_monitoring_schedules", stdout=StringIO())  # idempotent
    assert Schedule.objects.filter(name__in=[VERIFY, RECONCILE, CHECKS]).count() == 3


def test_only_admins_and_the_system_see_or_write_monitoring_rows(host, admin_user, raw_sql):
    raise_alert(key="test:rls", severity=AlertSeverity.WARNING, title="private")
    with system_context():
        VerificationRun.objects.create(status=RunStatus.CLEAN)
        since = timezone.now() - timedelta(days=1)
        reconcile_run = ReconciliationRun.objects.create(
            period_start=since, period_end=timezone.now(), status=RunStatus.CLEAN
        )
        raw_sql(
            "INSERT INTO monitoring_reconciliation_differences (run_id, kind, match_key,"
            " stripe_transaction_id, stripe_type, stripe_currency, ledger_idempotency_key,"
            " ledger_currency, details) VALUES (%s, 'extra_in_ledger', 'ledger:x', '', '', '',"
            " 'x', 'USD', '{}')",
            [reconcile_run.pk],
        )

    with user_context(host):
        for table in TABLES:
            assert raw_sql(f"SELECT count(*) FROM {table}") == [(0,)], table
        with pytest.raises(Exception, match="row-level security"), transaction.atomic():
            raw_sql(
                "INSERT INTO monitoring_verification_runs (status, trigger, difference_count,"
                " differences, error, started_at) VALUES ('clean', 'x', 0, '[]', '', now())"
            )
    with user_context(admin_user):
        for table in TABLES:
            assert raw_sql(f"SELECT count(*) FROM {table}")[0][0] >= 1, table
    with rls_context(user_id=None, role=ContextRole.USER):
        assert raw_sql("SELECT count(*) FROM alerts") == [(0,)]
