"""DELETE /api/auth/me: personal data erased or pseudonymised across tables, the books kept
and still verifying, the act audited without PII, no more logins; refused while money or a
dispute is still in motion. Audit rows can only be redacted through the one DB function."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import DatabaseError, transaction
from django.utils import timezone
from djstripe.models import Event

from anomalies.models import Anomaly
from ledger.chart import user_code
from ledger.selectors import account_balance, ledger_differences
from payouts.services import initiate_payout
from reporting.models import Report, ReportStatus
from reporting.storage import report_storage
from tests.disputes.conftest import control, deliver, events_about, onboard, sell
from tests.factories import DEFAULT_PASSWORD, AdminFactory, HostFactory, UserFactory
from treasury.models import AuditLog, User
from treasury.rls import system_context
from treasury.services import record_audit, snapshot

pytestmark = pytest.mark.django_db(databases=["default", "owner"])

EMAIL = "jane.erasable@example.test"
NAME = "Jane Erasable"


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


def pii_rows(raw_sql: Any, *terms: str) -> dict[str, int]:
    """Rows that still mention any term, searched with raw SQL under the system context."""
    found: dict[str, int] = {}
    like = [f"%{t}%" for t in terms]
    queries = {
        "users": "SELECT count(*) FROM users WHERE "
        + " OR ".join(["email ILIKE %s OR display_name ILIKE %s"] * len(terms)),
        "audit_logs": "SELECT count(*) FROM audit_logs WHERE "
        + " OR ".join(
            ["(coalesce(before::text, '') || coalesce(after::text, '') || details::text) ILIKE %s"]
            * len(terms)
        ),
        "reports": "SELECT count(*) FROM reports WHERE "
        + " OR ".join(
            ["(parameters::text || files::text || location || error) ILIKE %s"] * len(terms)
        ),
        "anomalies": "SELECT count(*) FROM anomalies WHERE "
        + " OR ".join(["(description || resolution_note || features::text) ILIKE %s"] * len(terms)),
        "djstripe_event": "SELECT count(*) FROM djstripe_event WHERE "
        + " OR ".join(["(data::text || stripe_data::text) ILIKE %s"] * len(terms)),
    }
    with system_context():
        for table, query in queries.items():
            params = [p for p in like for _ in range(2)] if table == "users" else like
            found[table] = raw_sql(query, params)[0][0]
    return found


def stripe_event_mentioning(email: str) -> Event:
    with system_context():
        return Event.objects.create(
            id=f"evt_{uuid.uuid4().hex[:16]}",
            type="customer.updated",
            livemode=False,
            api_version="2024-06-20",
            data={"object": {"id": "cus_1", "email": email, "name": NAME, "balance": 0}},
            stripe_data={"id": "evt", "data": {"object": {"email": email}}},
        )


def test_deleting_me_erases_personal_data_and_keeps_the_books(
    stripe_settings, client_for, api_client, raw_sql, django_capture_on_commit_callbacks
):
    host = HostFactory(email=EMAIL, display_name=NAME)
    onboard(stripe_settings, host)
    sell(stripe_settings, amount_cents=10_000, host=host)
    payable_code = user_code(host.pk, "payable", "USD")
    with system_context():
        payable_before = account_balance(code=payable_code)
        # PII copies across tables: an admin's edit (audit snapshot), a report file, an
        # anomaly's text, a stored Stripe payload.
        record_audit(actor=AdminFactory(), action="admin.change", target=host, after=snapshot(host))
        location = report_storage().save(
            f"1099/{uuid.uuid4().hex}.csv", ContentFile(f"{EMAIL},{NAME},9000\n")
        )
        report = Report.objects.create(
            user=host,
            type="1099",
            format="csv",
            status=ReportStatus.DONE,
            parameters={"year": 2026, "user_id": str(host.pk)},
            dedupe_key="k",
            location=location,
            filename="1099.csv",
            files=[{"name": "1099.csv", "location": location}],
        )
        anomaly = Anomaly.objects.create(
            detector="test",
            fingerprint=f"t:{host.pk}",
            severity="low",
            subject_type="user",
            subject_id=str(host.pk),
            user=host,
            description=f"payouts to {EMAIL} look odd",
            features={"who": NAME},
            observed_at=timezone.now(),
        )
    stripe_event_mentioning(EMAIL)
    before = pii_rows(raw_sql, EMAIL, NAME)
    assert all(before[t] for t in ("users", "audit_logs", "anomalies", "djstripe_event"))
    assert EMAIL in report_storage().open(location).read().decode()
    token_client = client_for(host)

    with django_capture_on_commit_callbacks(execute=True):
        response = token_client.delete("/api/auth/me")
    assert response.status_code == 204, response.content

    assert pii_rows(raw_sql, EMAIL, NAME) == {
        "users": 0,
        "audit_logs": 0,
        "reports": 0,
        "anomalies": 0,
        "djstripe_event": 0,
    }
    assert not report_storage().exists(location)
    with system_context():
        host = User.objects.get(pk=host.pk)
        report = Report.objects.get(pk=report.pk)
        erase = AuditLog.objects.get(action="user.erase", target_id=str(host.pk))
        redact = AuditLog.objects.get(action="privacy.audit_redact", target_id=str(host.pk))
        # the books: untouched, and still verifying
        assert account_balance(code=payable_code) == payable_before
        assert list(ledger_differences()) == []
        assert Anomaly.objects.get(pk=anomaly.pk).description == "payouts to [redacted] look odd"
    call_command("verify_ledger")  # raises on any difference
    assert (host.is_active, host.email, host.display_name) == (
        False,
        f"deleted-{host.pk}@users.invalid",
        "",
    )
    assert not host.has_usable_password()
    assert (report.status, report.location) == ("failed", "")
    assert erase.user_id == host.pk
    assert erase.after["personal_data"] == "erased"
    assert redact.details["rows_redacted"] >= 1  # the admin's edit

    login = api_client.post(
        "/api/auth/login", {"email": EMAIL, "password": DEFAULT_PASSWORD}, format="json"
    )
    assert login.status_code == 401
    assert token_client.get("/api/auth/me").status_code == 401


def test_an_unsettled_payout_or_open_dispute_blocks_deletion_with_a_409(
    stripe_settings, stripe_api, client_for, settings
):
    settings.PAYOUTS_RISK_HOLD_THRESHOLD_BPS = 10_001
    host = HostFactory(email=EMAIL, display_name=NAME)
    onboard(stripe_settings, host)
    disputed = sell(stripe_settings, amount_cents=10_000, host=host)
    with system_context():
        payout = initiate_payout(
            user=host, amount_cents=2_000, currency="USD", method="standard", idempotency_key="p1"
        )
    control(stripe_settings, f"/_standin/charges/{disputed}/dispute", {})
    for event in events_about(stripe_api, disputed):
        deliver(event)

    response = client_for(host).delete("/api/auth/me")
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert error["fields"]["payouts"] == [str(payout.pk)]
    assert len(error["fields"]["disputes"]) == 1
    with system_context():
        host = User.objects.get(pk=host.pk)
        assert not AuditLog.objects.filter(action="user.erase", target_id=str(host.pk)).exists()
    assert (host.email, host.is_active) == (EMAIL, True)


def test_the_runtime_role_cannot_rewrite_audit_rows(raw_sql):
    user = UserFactory(email=EMAIL)
    with system_context():
        row = record_audit(actor=None, action="user.seed", target=user, after=snapshot(user))
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            raw_sql("SELECT set_config('treasury.audit_redaction', 'on', true)")
            raw_sql("UPDATE audit_logs SET after = '{}'::jsonb WHERE id = %s", [row.pk])
        # No DELETE policy: the runtime role sees no row to delete.
        raw_sql("DELETE FROM audit_logs WHERE id = %s", [row.pk])
        assert AuditLog.objects.get(pk=row.pk).after["email"] == EMAIL


def test_erasing_twice_changes_nothing_more(client_for):
    user = UserFactory(email=EMAIL, display_name=NAME)
    client = client_for(user)
    assert client.delete("/api/auth/me").status_code == 204
    from privacy.services import erase_user

    with system_context():
        erase_user(user=User.objects.get(pk=user.pk), actor=None)
        assert AuditLog.objects.filter(action="user.erase", target_id=str(user.pk)).count() == 1


def test_the_retention_job_erases_long_deactivated_users_and_old_payload_pii(settings):
    from privacy.services import apply_retention

    settings.PRIVACY_RETENTION_DAYS = 30
    settings.PRIVACY_WEBHOOK_PAYLOAD_DAYS = 90
    old = UserFactory(email=EMAIL, display_name=NAME)
    recent = UserFactory(email="recent.leaver@example.test")
    now = timezone.now()
    with system_context():
        User.objects.filter(pk=old.pk).update(
            is_active=False, deactivated_at=now - timedelta(days=31)
        )
        User.objects.filter(pk=recent.pk).update(
            is_active=False, deactivated_at=now - timedelta(days=2)
        )
    stale = stripe_event_mentioning("buyer.old@example.test")
    fresh = stripe_event_mentioning("buyer.new@example.test")
    with system_context():
        Event.objects.filter(pk=stale.pk).update(djstripe_created=now - timedelta(days=91))

    summary = apply_retention(now=now)
    assert summary["users_erased"] >= 1 and summary["webhook_payloads"] >= 1

    with system_context():
        old = User.objects.get(pk=old.pk)
        recent = User.objects.get(pk=recent.pk)
        stale = Event.objects.get(pk=stale.pk)
        fresh = Event.objects.get(pk=fresh.pk)
        erase = AuditLog.objects.get(action="user.erase", target_id=str(old.pk))
    assert old.email == f"deleted-{old.pk}@users.invalid"
    assert erase.user_id is None  # the job, not a person
    assert recent.email == "recent.leaver@example.test"
    assert stale.data["object"] == {"id": "cus_1", "email": None, "name": None, "balance": 0}
    assert fresh.data["object"]["email"] == "buyer.new@example.test"
    assert apply_retention(now=now)["users_erased"] == 0  # idempotent


def test_the_retention_job_is_scheduled():
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="privacy: retention")
    assert schedule.func == "privacy.tasks.apply_retention"
