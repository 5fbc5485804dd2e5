"""The right to erasure and the retention job.

`erase_user` (DELETE /api/auth/me) removes a user's personal data and keeps the money. It
touches only that user's own fields, found by primary and foreign keys and known columns,
never by searching text platform-wide (a user named "succeeded" must not scrub every
`charge.succeeded` there is):
- refused with a 409 while a payout is unsettled (pending, held, in flight) or a dispute
  about the user's sale or purchase is open: those still need to reach the person;
- the `users` row stays (the ledger, payouts and refunds refer to it) but is deactivated,
  then pseudonymised (`deleted-<id>@users.invalid`, no name, no usable password: no login,
  and tokens are refused since the JWT authentication and refresh reject inactive users);
- audit rows, through `privacy_redact_audit` (the one database function allowed to rewrite
  audit_logs, for the system context and a deactivated user only; see privacy/migrations):
  in the rows about the user, every string under a personal key (email, display_name, name,
  ...) of before/after/details becomes "[redacted]"; in the rows they acted in, only the
  strings under those keys that are their email or name. Who, what and when stay;
- report files requested by or about the user, and 1099 files (they list recipients' names
  and emails), are deleted after commit; the report rows stay, marked failed with a reason;
- local copies of Stripe objects (dj-stripe's accounts, customers, charges, events, webhook
  bodies): inside each payload, the user's own objects (their connected account; objects
  whose metadata names them as user or buyer, or whose email is theirs) lose their personal
  keys, a string equal to their email becomes the pseudonym, and objects they sold
  (metadata host_id) lose the `description` the demo sale writes their name into. Types,
  ids, amounts and metadata stay, so a stored event can still be retried and booked;
- free text in the user's own rows (anomalies about them, refunds they bought, sold or
  asked for, processing records of their Stripe objects) loses their email and name;
  nobody else's rows are read for it;
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
from dataclasses import dataclass
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
        "account_holder_name",
    }
)
_PII_KEYS_PATTERN = (
    r'"(email|receipt_email|name|phone|first_name|last_name|account_holder_name)": "[^"]'
    r'|"(address|billing_details|shipping|individual|dob)": \{'
)
# dj-stripe's JSON columns holding Stripe's payloads (an event's `data` is its object).
STRIPE_PAYLOAD_FIELDS = ("stripe_data", "data")


def erased_email(user_id: Any) -> str:
    return f"deleted-{user_id}@{ERASED_EMAIL_DOMAIN}"


def is_erased(user: User) -> bool:
    return user.email == erased_email(user.pk)


@dataclass(frozen=True)
class Footprint:
    """Where one user's personal data can be, found by keys: who they are (read before the
    row is pseudonymised) and the ids of their Stripe objects."""

    user_id: str
    email: str  # lower-cased
    display_name: str
    # Their connected account(s) at Stripe.
    account_ids: frozenset[str]
    # Stripe objects of money they paid, sold or received: charges, payment intents,
    # refunds, disputes, transfers, payouts.
    object_ids: frozenset[str]

    def terms(self) -> list[str]:
        """What identifies them in free text: their email and (if not trivially short) their
        display name."""
        return [self.email] + ([self.display_name] if len(self.display_name) >= 3 else [])


def footprint(user: User) -> Footprint:
    from disputes.models import Dispute, Refund
    from payouts.models import Payout
    from treasury.stripe.models import StripeAccount, StripeCharge

    pk = user.pk
    with system_context():
        accounts = set(
            StripeAccount.objects.filter(user_id=pk).values_list("stripe_account_id", flat=True)
        )
        objects: set[str] = set()
        for row in StripeCharge.objects.filter(Q(buyer_id=pk) | Q(host_id=pk)).values_list(
            "stripe_charge_id", "payment_intent_id"
        ):
            objects.update(row)
        objects.update(
            Refund.objects.filter(
                Q(buyer_id=pk) | Q(host_id=pk) | Q(requested_by_id=pk)
            ).values_list("stripe_refund_id", flat=True)
        )
        objects.update(
            Dispute.objects.filter(Q(host_id=pk) | Q(charge__buyer_id=pk)).values_list(
                "stripe_dispute_id", flat=True
            )
        )
        for row in Payout.objects.filter(user_id=pk).values_list(
            "stripe_transfer_id", "stripe_payout_id", "stripe_account_id"
        ):
            objects.update(row[:2])
            accounts.add(row[2])
    return Footprint(
        user_id=str(pk),
        email=user.email.lower(),
        display_name=(user.display_name or "").strip(),
        account_ids=frozenset(a for a in accounts if a),
        object_ids=frozenset(o for o in objects if o),
    )


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
    """The terms as whole words (a name inside a longer word is not the name)."""
    return re.compile("|".join(rf"(?<!\w){re.escape(t)}(?!\w)" for t in terms), re.IGNORECASE)


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


def _redact_own_rows(model: type[models.Model], names: Iterable[str], own: Q, fp: Footprint) -> int:
    """Replace the user's email and name in the given text/JSON fields of the rows `own`
    selects (theirs, by key): other users' rows are never read for it."""
    fields = _text_fields(model, names)
    if not fields:
        return 0
    pattern = _term_pattern(fp.terms())
    changed = 0
    for row in model._default_manager.filter(own):
        updated = []
        for field in fields:
            old = getattr(row, field.attname)
            new = _redact_value(old, pattern)
            if new != old:
                setattr(row, field.attname, new)
                updated.append(field.name)
        if updated:
            row.save(update_fields=updated)
            changed += 1
    return changed


def _own_free_text_rows(fp: Footprint) -> list[tuple[str, tuple[str, ...], Q]]:
    """(app_label.Model, free-text fields, the user's rows) for the free text other apps
    keep that may quote them."""
    stripe_ids = fp.account_ids | fp.object_ids
    return [
        (
            "anomalies.Anomaly",
            ("description", "resolution_note", "features"),
            Q(user_id=fp.user_id) | Q(subject_type="user", subject_id=fp.user_id),
        ),
        (
            "disputes.Refund",
            ("note", "failure_message"),
            Q(buyer_id=fp.user_id) | Q(host_id=fp.user_id) | Q(requested_by_id=fp.user_id),
        ),
        (
            "treasury.StripeEventProcessing",
            ("last_error", "note"),
            Q(stripe_account_id__in=fp.account_ids) | Q(stripe_object_id__in=stripe_ids),
        ),
    ]


# --- Stripe copies: the user's own objects inside stored payloads ---

# Metadata keys by which our own Stripe objects name the person they belong to (onboarding
# writes user_id on the account, sales write buyer_id); host_id names the seller.
OWNER_METADATA_KEYS = ("user_id", "buyer_id")
SELLER_METADATA_KEY = "host_id"
# The seller's name is written into this field of a sale (create_demo_charge).
SELLER_TEXT_KEYS = ("description",)
# Objects of a connected account that describe its holder.
ACCOUNT_PARTS = ("person", "bank_account", "card")


def _is_own_object(obj: dict[str, Any], fp: Footprint) -> bool:
    """A Stripe object that is the user's personal data: their connected account (and its
    persons and bank accounts), a customer or payment naming them in its metadata, or one
    whose email is theirs."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    if any(str(metadata.get(key) or "") == fp.user_id for key in OWNER_METADATA_KEYS):
        return True
    if obj.get("id") in fp.account_ids:
        return True
    if obj.get("object") in ACCOUNT_PARTS and obj.get("account") in fp.account_ids:
        return True  # a person or bank account of their connected account
    billing = obj.get("billing_details") if isinstance(obj.get("billing_details"), dict) else {}
    emails = (obj.get("email"), obj.get("receipt_email"), billing.get("email"))
    return any(isinstance(e, str) and e.lower() == fp.email for e in emails)


def _is_sold_by(obj: dict[str, Any], fp: Footprint) -> bool:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return str(metadata.get(SELLER_METADATA_KEY) or "") == fp.user_id


def pseudonymise_stripe_payload(value: Any, fp: Footprint) -> Any:
    """A stored Stripe payload with the user's personal fields removed (see the module's
    docstring). Everything else, the event's type, ids, amounts and metadata included, is
    returned as it was, so the payload stays replayable."""
    if isinstance(value, dict):
        if _is_own_object(value, fp):
            value = scrub_pii_keys(value)
        elif _is_sold_by(value, fp):
            value = {k: (None if k in SELLER_TEXT_KEYS else v) for k, v in value.items()}
        return {key: pseudonymise_stripe_payload(item, fp) for key, item in value.items()}
    if isinstance(value, list):
        return [pseudonymise_stripe_payload(item, fp) for item in value]
    if isinstance(value, str) and value.lower() == fp.email:
        return erased_email(fp.user_id)
    return value


def _mentions(fields: Sequence[str], fp: Footprint) -> Q:
    """A search filter for rows whose payload may hold the user's objects (their email, id
    or account ids appear in it). It only finds candidates: what changes is decided on the
    parsed payload by `pseudonymise_stripe_payload`."""
    needles = [fp.email, fp.user_id, *fp.account_ids]
    condition = Q()
    for field in fields:
        for needle in needles:
            condition |= Q(**{f"{field}__icontains": needle})
    return condition


def _pseudonymise_stripe_copies(fp: Footprint) -> int:
    """Every dj-stripe table's stored payloads (`stripe_data`, an event's `data`), and the
    webhook bodies, with the user's personal fields removed. Personal columns dj-stripe
    copies out of the user's own objects (a customer's email, name...) are emptied too."""
    from djstripe.models import WebhookEventTrigger

    changed = 0
    for model in _stripe_copy_models():
        if model is WebhookEventTrigger:
            continue
        json_fields = [
            f.name
            for f in model._meta.concrete_fields
            if isinstance(f, models.JSONField) and f.name in STRIPE_PAYLOAD_FIELDS
        ]
        if not json_fields:
            continue
        annotations = {f"_privacy_{name}": Cast(name, TextField()) for name in json_fields}
        rows = model._default_manager.annotate(**annotations).filter(
            _mentions(list(annotations), fp)
        )
        for row in rows:
            updated = []
            for name in json_fields:
                old = getattr(row, name)
                new = pseudonymise_stripe_payload(old, fp)
                if new != old:
                    setattr(row, name, new)
                    updated.append(name)
            stripe_data = getattr(row, "stripe_data", None)
            if isinstance(stripe_data, dict) and _is_own_object(stripe_data, fp):
                updated += _blank_personal_columns(row)
            if updated:
                row.save(update_fields=updated)
                changed += 1
    for trigger in WebhookEventTrigger.objects.filter(_mentions(["body"], fp)):
        try:
            body = json.loads(trigger.body)
        except ValueError:
            continue  # not JSON: it never became an event, and nothing in it is parsed
        new = pseudonymise_stripe_payload(body, fp)
        if new != body:
            trigger.body = json.dumps(new)
            trigger.save(update_fields=["body"])
            changed += 1
    return changed


def _blank_personal_columns(row: models.Model) -> list[str]:
    """dj-stripe's columns copied from a personal key (email, name, phone...)."""
    blanked = []
    for field in row._meta.concrete_fields:
        if field.name not in PII_KEYS or getattr(row, field.attname) in (None, "", {}):
            continue
        empty = {} if isinstance(field, models.JSONField) else ""
        setattr(row, field.attname, None if field.null else empty)
        blanked.append(field.name)
    return blanked


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


def _redact_audit(user: User) -> int:
    """The database function checks the caller (system context) and the user (deactivated)."""
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
        fp = footprint(user)  # who they were, before the row forgets it
        was_active = user.is_active
        # Deactivated first: the audit redaction refuses an active user.
        user.is_active = user.is_staff = user.is_superuser = False
        user.deactivated_at = user.deactivated_at or timezone.now()
        user.save(update_fields=["is_active", "is_staff", "is_superuser", "deactivated_at"])
        counts: dict[str, int] = {"audit_logs": _redact_audit(user)}
        counts["reports"] = _erase_reports(user)
        counts["stripe_copies"] = _pseudonymise_stripe_copies(fp)
        counts["free_text"] = sum(
            _redact_own_rows(apps.get_model(label), fields, own, fp)
            for label, fields, own in _own_free_text_rows(fp)
        )
        user.email = erased_email(user.pk)
        user.display_name = ""
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
