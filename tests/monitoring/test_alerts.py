"""One incident, one alert: critical ones reach Slack (a local receiver here), warnings the
ops mailing list (Django's outbox), once however often the checks see them, after commit,
through django-q2; they are cleared when the incident is over, or resolved by an admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from ledger.selectors import LedgerDifference
from monitoring import selectors, services
from monitoring.models import Alert, AlertSeverity, RunStatus, VerificationRun
from payouts.models import Payout, PayoutStatus
from payouts.services import initiate_payout, settle_payout
from tests.disputes.conftest import onboard, sell
from tests.factories import DEFAULT_PASSWORD, AdminFactory, HostFactory
from treasury.errors import Conflict, Forbidden, InvalidInput
from treasury.models import AuditLog
from treasury.rls import system_context
from treasury.stripe.models import EventStatus, StripeEventProcessing

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sync_jobs")]


def about(slack, needle: str) -> list[str]:
    return [text for text in slack.texts() if needle in text]


def alert(key: str) -> Alert:
    with system_context():
        return Alert.objects.filter(key=key).order_by("-id").first()


@pytest.fixture
def in_flight_payout(stripe_settings, settings, django_capture_on_commit_callbacks) -> Payout:
    """An instant payout: transferred to the host's account, its bank payout on its way."""
    host = HostFactory()
    onboard(stripe_settings, host)
    sell(stripe_settings, amount_cents=10000, host=host)
    with django_capture_on_commit_callbacks(execute=True):
        payout = initiate_payout(
            user=host, amount_cents=9000, currency="USD", method="instant", idempotency_key="i1"
        )
    with system_context():
        payout = Payout.objects.get(pk=payout.pk)
    assert payout.status == PayoutStatus.IN_FLIGHT
    return payout


def test_a_stuck_payout_reaches_slack_once_however_often_the_check_runs(
    in_flight_payout, slack, settings, django_capture_on_commit_callbacks
):
    settings.MONITORING_PAYOUT_STUCK_MINUTES = 60
    key = f"payout-stuck:{in_flight_payout.pk}"
    services.run_checks()
    assert alert(key) is None  # in flight for a moment: not stuck

    with system_context():
        Payout.objects.filter(pk=in_flight_payout.pk).update(
            updated_at=timezone.now() - timedelta(hours=2)
        )
    with django_capture_on_commit_callbacks(execute=True):
        first = services.run_checks()
    with django_capture_on_commit_callbacks(execute=True):
        second = services.run_checks()
    assert key in first.raised and key not in first.seen
    assert key in second.seen and key not in second.raised

    [text] = about(slack, f"Payout {in_flight_payout.pk} ")
    assert "stuck in_flight for more than 60 minutes" in text
    assert text.startswith("Treasury critical:")
    stuck = alert(key)
    assert (stuck.severity, stuck.count, stuck.resolved_at) == (AlertSeverity.CRITICAL, 2, None)
    assert stuck.notified_at is not None and stuck.notify_attempts == 1

    # The bank payout arrives: the next check clears the incident, and says nothing more.
    settle_payout(payout_id=in_flight_payout.pk)
    with django_capture_on_commit_callbacks(execute=True):
        summary = services.run_checks()
    assert key in summary.cleared
    cleared = alert(key)
    assert cleared.resolved_at is not None and cleared.resolved_by is None
    assert cleared.resolution_note == "the payout is no longer stuck"
    assert len(about(slack, f"Payout {in_flight_payout.pk} ")) == 1
    with system_context():
        assert AuditLog.objects.filter(action="alert.clear", target_id=str(cleared.pk)).exists()


def test_a_webhook_event_failing_n_times_is_critical_until_it_is_processed(
    slack, settings, django_capture_on_commit_callbacks
):
    settings.MONITORING_WEBHOOK_FAILED_ATTEMPTS = 3
    with system_context():
        event = StripeEventProcessing.objects.create(
            stripe_event_id="evt_monitoring_failing_1",
            event_type="charge.succeeded",
            stripe_object_id="ch_monitoring_1",
            status=EventStatus.FAILED,
            attempts=2,
            last_error="InvalidInput: the charge names no split",
        )
    with django_capture_on_commit_callbacks(execute=True):
        services.run_checks()
    assert about(slack, "evt_monitoring_failing_1") == []  # twice is not yet N times

    with system_context():
        StripeEventProcessing.objects.filter(pk=event.pk).update(attempts=3)
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            services.run_checks()
    [text] = about(slack, "evt_monitoring_failing_1")
    assert "failed 3 times" in text and "names no split" in text

    with system_context():
        StripeEventProcessing.objects.filter(pk=event.pk).update(status=EventStatus.PROCESSED)
    services.run_checks()
    assert alert("webhook-failing:evt_monitoring_failing_1").resolved_at is not None


def test_ledger_differences_alert_once_and_a_clean_verification_clears_them(
    slack, monkeypatch, django_capture_on_commit_callbacks
):
    planted = [LedgerDifference("balance", "platform:stripe_balance:usd#0", 100, 90)]
    monkeypatch.setattr(services, "ledger_differences", lambda **kwargs: iter(planted))
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            run, found = services.verify_ledger(trigger="test")
        assert run.status == RunStatus.DIFFERENCES and run.difference_count == 1
    assert found == ["balance: platform:stripe_balance:usd#0: expected 100, found 90"]
    [text] = about(slack, "does not verify")
    assert "expected 100, found 90" in text
    assert alert("ledger-verify").count == 2

    monkeypatch.undo()
    clean, found = services.verify_ledger(trigger="test")
    assert (clean.status, found) == (RunStatus.CLEAN, [])
    assert alert("ledger-verify").resolved_at is not None
    with system_context():
        assert selectors.last_verification() == clean


def test_a_warning_goes_to_the_ops_mailing_list_not_slack(
    slack, settings, django_capture_on_commit_callbacks
):
    settings.MONITORING_VERIFY_STALE_HOURS = 26
    with system_context():
        old = VerificationRun.objects.create(status=RunStatus.CLEAN, trigger="test")
        VerificationRun.objects.filter(pk=old.pk).update(
            started_at=timezone.now() - timedelta(hours=30)
        )
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            services.run_checks()

    [message] = [m for m in mail.outbox if "not been verified" in m.subject]
    assert (
        message.subject
        == "[Treasury warning] The ledger has not been verified for more than 26 hours"
    )
    assert message.to == ["ops@treasury.test"]
    assert f"run {old.pk}" in message.body
    assert about(slack, "not been verified") == []
    assert alert("verify-stale").severity == AlertSeverity.WARNING


def test_critical_alerts_fall_back_to_mail_without_slack(
    settings, django_capture_on_commit_callbacks
):
    settings.SLACK_WEBHOOK_URL = ""
    settings.OPS_EMAILS = ["oncall@treasury.test"]
    with django_capture_on_commit_callbacks(execute=True):
        services.raise_alert(
            key="test:no-slack", severity=AlertSeverity.CRITICAL, title="Something broke"
        )
    [message] = [m for m in mail.outbox if "Something broke" in m.subject]
    assert message.subject == "[Treasury critical] Something broke"
    assert message.to == ["oncall@treasury.test"]


def test_nothing_is_sent_before_commit_and_a_failed_send_is_retried_once_sent(
    slack, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        raised = services.raise_alert(
            key="test:retry", severity=AlertSeverity.CRITICAL, title="Retry me"
        )
    assert slack.messages == [] and len(callbacks) == 1  # queued for after commit

    slack.status = 500
    for callback in callbacks:
        callback()
    failed = alert("test:retry")
    assert (failed.notified_at, failed.notify_attempts) == (None, 1)
    assert "500" in failed.last_error
    assert about(slack, "Retry me") == []

    slack.status = 200
    with django_capture_on_commit_callbacks(execute=True):
        first = services.run_checks()  # the check job queues the unsent alert again
    with django_capture_on_commit_callbacks(execute=True):
        second = services.run_checks()  # sent already: nothing to queue
    assert raised.pk in first.requeued and raised.pk not in second.requeued
    assert len(about(slack, "Retry me")) == 1
    sent = alert("test:retry")
    assert sent.notified_at is not None and sent.notify_attempts == 2 and sent.last_error == ""
    assert services.deliver_alert(alert_id=sent.pk) is False  # never twice


def test_the_database_keeps_one_open_alert_per_key(raw_sql):
    services.raise_alert(key="test:unique", severity=AlertSeverity.WARNING, title="once")
    with (
        system_context(),
        pytest.raises(Exception, match="alerts_one_open_per_key"),
        transaction.atomic(),
    ):
        raw_sql(
            "INSERT INTO alerts (key, severity, title, message, details, first_seen_at,"
            " last_seen_at, count, notify_attempts, last_error, resolution_note)"
            " VALUES ('test:unique', 'warning', 'twice', '', '{}', now(), now(), 1, 0, '', '')"
        )


def test_an_admin_resolves_an_alert_with_a_note_audited(admin_user, host):
    opened = services.raise_alert(
        key="test:resolve", severity=AlertSeverity.CRITICAL, title="Look at me"
    )
    with pytest.raises(Forbidden):
        services.resolve_alert(alert_id=opened.pk, actor=host, note="not mine")
    with pytest.raises(InvalidInput):
        services.resolve_alert(alert_id=opened.pk, actor=admin_user, note="  ")

    resolved = services.resolve_alert(alert_id=opened.pk, actor=admin_user, note="fixed by hand")

    assert resolved.resolved_by_id == admin_user.pk
    assert resolved.resolution_note == "fixed by hand"
    with system_context():
        audit = AuditLog.objects.get(action="alert.resolve", target_id=str(opened.pk))
    assert audit.user_id == admin_user.pk and audit.details == {"note": "fixed by hand"}
    with pytest.raises(Conflict):
        services.resolve_alert(alert_id=opened.pk, actor=admin_user, note="again")
    # Still happening: the next sighting is a new incident, alerted again.
    again = services.raise_alert(
        key="test:resolve", severity=AlertSeverity.CRITICAL, title="Look at me"
    )
    assert again.pk != opened.pk and again.was_raised


def test_the_admin_resolve_action_goes_through_the_audited_service(client):
    admin = AdminFactory()
    opened = services.raise_alert(key="test:admin", severity=AlertSeverity.WARNING, title="Hi")
    assert client.login(email=admin.email, password=DEFAULT_PASSWORD)

    listing = client.get("/admin/monitoring/alert/?status=open")
    assert listing.status_code == 200 and "test:admin" in listing.content.decode()
    response = client.post(
        "/admin/monitoring/alert/",
        {"action": "resolve", "_selected_action": [opened.pk], "note": "known, harmless"},
    )

    assert response.status_code == 302
    resolved = alert("test:admin")
    assert resolved.resolved_by_id == admin.pk and resolved.resolution_note == "known, harmless"
    with system_context():
        assert AuditLog.objects.filter(action="alert.resolve", target_id=str(opened.pk)).exists()
