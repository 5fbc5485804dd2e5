"""The right to erasure and the retention job.

`erase_user` (DELETE /api/auth/me) removes a user's personal data and keeps the money:
- refused with a 409 while a payout is unsettled (pending, held, in flight) or a dispute
  about the user's sale or purchase is open: those still need to reach the person;
- the `users` row stays (the ledger, payouts and refunds refer to it) but is pseudonymised
  (`deleted-<id>@users.invalid`, no name, no usable password, inactive: no login, and
  access tokens are refused since DRF's JWT authentication rejects inactive users);
- audit rows: their who/what/when stays, the user's email and name inside their
  before/after/details JSON become "[redacted]" through `privacy_redact_audit`, the one
  database function allowed to rewrite audit_logs (see privacy/migrations/0001_initial.py);
- report files requested by or about the user, and 1099 files (they list recipients' names
  and emails), are deleted after commit; the report rows stay, marked failed with a reason;
- local copies of Stripe objects (dj-stripe's accounts, customers, charges, events, webhook
  bodies) and free text (anomalies, refund notes, event errors) lose the email and name;
- ledger, payouts, refunds and disputes keep every amount: financial records are retained;
- issued VAT invoices keep the buyer block printed on them (invoices must be retained by
  law, GDPR art. 17(3)(b)); dispute notes are append-only evidence and are not rewritten.
One audit row (`user.erase`, no PII: counts only) records the request.

`apply_retention` (django-q2, scheduled by the migration) erases users deactivated more than
PRIVACY_RETENTION_DAYS ago that were never erased, removes report files left behind for
erased users, and blanks personal keys in Stripe webhook payloads older than
PRIVACY_WEBHOOK_PAYLOAD_DAYS.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from guardian.models import UserObjectPermission

from treasury.errors import Conflict
from treasury.models import User
from treasury.rls import system_context
from treasury.services import record_audit

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
ERASED_EMAIL_DOMAIN = "users.invalid"
# Keys of Stripe objects that hold a person's data (customers, billing details, accounts).
PII_KEYS = frozenset(
    {
        "email",
        "receipt_email",
        "name",
        "phone",
        "address",
        "billing_details",
        "shipping",
        "individual",
        "first_name",
        "last_name",
        "dob",
    }
)
_PII_KEYS_PATTERN = (
    r'"(email|receipt_email|name|phone|first_name|last_name)": "[^"]'
    r'|"(address|billing_details|shipping|individual|dob)": \{'
)
# Free text other apps keep that may quote a user: (app_label.Model, fields).
FREE_TEXT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("anomalies.Anomaly", ("description", "resolution_note", "features")),
    ("disputes.Refund", ("note", "failure_message")),
    ("treasury.StripeEventProcessing", ("last_error", "note")),
)
STRIPE_COPY_FIELDS = ("stripe_data", "data", "email", "name", "phone", "description", "body")


def erased_email(user_id: Any) -> str:
    return f"deleted-{user_id}@{ERASED_EMAIL_DOMAIN}"


def is_erased(user: User) -> bool:
    return user.email == erased_email(user.pk)


def pii_terms(user: User) -> list[str]:
    """What identifies the person in free text: their email and (if not trivially short)
    their display name."""
    terms = [user.email.lower()]
    name = (user.display_name or "").strip()
    if len(name) >= 3:
        terms.append(name)
    return terms


def deletion_blockers(*, user: User) -> dict[str, list[str]]:
    """Why the user cannot be erased yet: unsettled payouts, open disputes (empty: none)."""
    from disputes.models import OPEN_DISPUTE_STATUSES, Dispute
    from payouts.models import UNSETTLED_STATUSES, Payout

    with system_context():
        payouts = Payout.objects.filter(user_id=user.pk, status__in=UNSETTLED_STATUSES)
        disputes = Dispute.objects.filter(
            Q(host_id=user.pk) | Q(charge__buyer_id=user.pk), status__in=OPEN_DISPUTE_STATUSES
        )
        blockers = {
            "payouts": [str(pk) for pk in payouts.values_list("pk", flat=True)],
            "disputes": list(disputes.values_list("stripe_dispute_id", flat=True)),
        }
    return {key: value for key, value in blockers.items() if value}


# --- helpers: rewriting text and JSON ---


def _term_pattern(terms: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE)


def _redact_value(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: _redact_value(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, pattern) for v in value]
    return value


def scrub_pii_keys(value: Any) -> Any:
    """A Stripe payload with every personal key (PII_KEYS) emptied, at any depth; amounts,
    ids and everything else unchanged."""
    if isinstance(value, dict):
        return {
            key: (None if key in PII_KEYS and item not in (None, "", {}) else scrub_pii_keys(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrub_pii_keys(item) for item in value]
    return value


def _text_fields(model: type[models.Model], names: Iterable[str]) -> list[models.Field]:
    concrete = {field.name: field for field in model._meta.concrete_fields}
    return [
        concrete[name]
        for name in names
        if isinstance(concrete.get(name), models.CharField | models.TextField | models.JSONField)
    ]


def _redact_rows(model: type[models.Model], names: Iterable[str], terms: Sequence[str]) -> int:
    """Replace `terms` in the given text/JSON fields of every row that mentions one."""
    fields = _text_fields(model, names)
    if not fields or not terms:
        return 0
    condition = Q()
    annotations: dict[str, Any] = {}
    for field in fields:
        column = field.name
        if isinstance(field, models.JSONField):
            column = f"_privacy_{field.name}"
            annotations[column] = Cast(field.name, TextField())
        for term in terms:
            condition |= Q(**{f"{column}__icontains": term})
    pattern = _term_pattern(terms)
    changed = 0
    for row in model._default_manager.annotate(**annotations).filter(condition):
        for field in fields:
            setattr(row, field.attname, _redact_value(getattr(row, field.attname), pattern))
        row.save(update_fields=[f.name for f in fields])
        changed += 1
    return changed


def _stripe_copy_models() -> list[type[models.Model]]:
    return [
        model
        for model in apps.get_app_config("djstripe").get_models()
        if model._meta.managed and not model._meta.proxy
    ]


# --- erasure ---


def _erase_reports(user: User) -> int:
    """Delete (after commit) the files of reports by or about the user, and of 1099 reports
    (they list recipients by name and email); the rows stay, failed, with the reason."""
    from reporting.models import Report, ReportStatus, ReportType
    from reporting.storage import report_storage

    reports = Report.objects.filter(
        Q(user_id=user.pk) | Q(parameters__user_id=str(user.pk)) | Q(type=ReportType.EARNINGS_1099)
    ).exclude(location="", files=[])
    locations: list[str] = []
    count = 0
    for report in reports.select_for_update():
        locations += [report.location] if report.location else []
        locations += [f["location"] for f in report.files or [] if f.get("location")]
        report.location = report.filename = report.checksum_sha256 = ""
        report.files = []
        report.size_bytes = None
        report.status = ReportStatus.FAILED
        report.error = "files removed: personal data erased on a user's request"
        report.save()
        count += 1

    def delete_files() -> None:
        storage = report_storage()
        for location in set(locations):
            try:
                storage.delete(location)
            except Exception:  # a file already gone is what we wanted
                logger.warning("could not delete report file %s", location, exc_info=True)

    transaction.on_commit(delete_files)
    return count


def _scrub_connected_account(user: User) -> int:
    """dj-stripe's copy of the user's Connect account: the person's details (individual,
    business profile contact, email) emptied whatever they are; ids and flags stay."""
    from djstripe.models import Account

    from treasury.stripe.models import StripeAccount

    account_ids = StripeAccount.objects.filter(user_id=user.pk).values_list(
        "stripe_account_id", flat=True
    )
    changed = 0
    for account in Account.objects.filter(id__in=list(account_ids)):
        account.stripe_data = scrub_pii_keys(account.stripe_data)
        account.save(update_fields=["stripe_data"])
        changed += 1
    return changed


def _redact_audit(user: User) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT privacy_redact_audit(%s)", [str(user.pk)])
        return int(cursor.fetchone()[0])


@transaction.atomic
def erase_user(*, user: User, actor: User | None) -> User:
    """The GDPR erasure (see the module's docstring); `actor` is the user themself, an
    admin, or None for the retention job. Idempotent: an erased user is returned as is.
    Conflict (409) while a payout is unsettled or a dispute open; nothing is changed then."""
    with system_context():
        user = User.objects.select_for_update().get(pk=user.pk)
        if is_erased(user):
            return user
        blockers = deletion_blockers(user=user)
        if blockers:
            raise Conflict(
                "the account cannot be deleted yet: "
                + "; ".join(f"{kind} {', '.join(ids)}" for kind, ids in blockers.items())
                + " must settle first",
                fields=blockers,
            )
        terms = pii_terms(user)
        counts: dict[str, int] = {"audit_logs": _redact_audit(user)}
        counts["reports"] = _erase_reports(user)
        counts["stripe_copies"] = _scrub_connected_account(user) + sum(
            _redact_rows(model, STRIPE_COPY_FIELDS, terms) for model in _stripe_copy_models()
        )
        counts["free_text"] = sum(
            _redact_rows(apps.get_model(label), fields, terms) for label, fields in FREE_TEXT
        )
        was_active = user.is_active
        user.email = erased_email(user.pk)
        user.display_name = ""
        user.is_active = user.is_staff = user.is_superuser = False
        user.deactivated_at = user.deactivated_at or timezone.now()
        user.set_unusable_password()
        user.save()
        user.groups.clear()
        user.user_permissions.clear()
        UserObjectPermission.objects.filter(user=user).delete()
        # Written after the redaction and without PII: ids, flags and counts only.
        record_audit(
            actor=actor,
            action="user.erase",
            target=user,
            before={"is_active": was_active, "personal_data": "present"},
            after={
                "is_active": False,
                "personal_data": "erased",
                "deactivated_at": user.deactivated_at.isoformat(),
            },
            details={"redacted": counts},
        )
    return user


# --- retention ---


def _scrub_old_webhook_payloads(cutoff: Any) -> int:
    from djstripe.models import Event, WebhookEventTrigger

    changed = 0
    events = Event.objects.annotate(_text=Cast("data", TextField())).filter(
        djstripe_created__lt=cutoff, _text__regex=_PII_KEYS_PATTERN
    )
    for event in events.iterator(chunk_size=500):
        event.data = scrub_pii_keys(event.data)
        event.stripe_data = scrub_pii_keys(event.stripe_data)
        event.save(update_fields=["data", "stripe_data"])
        changed += 1
    triggers = WebhookEventTrigger.objects.filter(created__lt=cutoff, body__regex=_PII_KEYS_PATTERN)
    for trigger in triggers.iterator(chunk_size=500):
        try:
            trigger.body = json.dumps(scrub_pii_keys(json.loads(trigger.body)))
        except ValueError:
            trigger.body = ""  # not JSON: nothing in it is worth keeping
        trigger.save(update_fields=["body"])
        changed += 1
    return changed


def apply_retention(*, now: Any = None) -> dict[str, int]:
    """One run of the retention rules; returns what each changed. Each erasure is its own
    transaction, so one user with a blocker does not hold back the rest."""
    now = now or timezone.now()
    user_cutoff = now - timedelta(days=settings.PRIVACY_RETENTION_DAYS)
    payload_cutoff = now - timedelta(days=settings.PRIVACY_WEBHOOK_PAYLOAD_DAYS)
    summary = {"users_erased": 0, "users_blocked": 0, "reports": 0, "webhook_payloads": 0}
    with system_context():
        due = list(
            User.objects.filter(is_active=False, deactivated_at__lt=user_cutoff)
            .exclude(email__endswith=f"@{ERASED_EMAIL_DOMAIN}")
            .values_list("pk", flat=True)
        )
    for pk in due:
        try:
            with system_context():
                erase_user(user=User.objects.get(pk=pk), actor=None)
            summary["users_erased"] += 1
        except Conflict:
            summary["users_blocked"] += 1
    with transaction.atomic(), system_context():
        from reporting.models import Report

        leftover = (
            Report.objects.filter(user__email__endswith=f"@{ERASED_EMAIL_DOMAIN}")
            .exclude(location="", files=[])
            .values_list("user_id", flat=True)
            .distinct()
        )
        for user in User.objects.filter(pk__in=list(leftover)):
            summary["reports"] += _erase_reports(user)
        summary["webhook_payloads"] = _scrub_old_webhook_payloads(payload_cutoff)
    return summary
