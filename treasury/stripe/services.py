"""Every write the Stripe integration makes: webhook intake and exactly-once processing,
connected accounts, charges posted into the ledger, demo charges and retries.

Webhooks, in order:
1. `verified_event` checks the `Stripe-Signature` (HMAC with STRIPE_WEBHOOK_SECRET, at most
   STRIPE_WEBHOOK_TOLERANCE_SECONDS old) and the JSON before anything is written, so a bad
   request leaves no row behind (dj-stripe's `from_request` stores the trigger first and
   checks it after: fine for its own view, not for "nothing stored").
2. `receive_webhook` hands the request to dj-stripe (`WebhookEventTrigger.from_request` on
   the configured `WebhookEndpoint`), which stores the trigger, verifies it again and calls
   DJSTRIPE_WEBHOOK_EVENT_CALLBACK = `on_webhook_trigger`.
3. `process_event` takes PostgreSQL advisory locks on the event's Stripe object, stores the
   `djstripe.Event`, and runs the treasury's handler at most once per event id.

Why the callback and not dj-stripe's own processing (`Event.process`): that runs dj-stripe's
sync handlers first, which re-fetch every object and sync a dozen models per event (with the
platform's id in `Stripe-Account`); a failure there would block the books on an unrelated
mirror. The treasury needs the event stored and its own handlers run exactly once, under one
lock. dj-stripe 2.11 calls the callback deprecated in favour of signals, but its signals fire
around `Event.process`, not instead of it (see treasury/stripe/checks.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import stripe
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest
from django.utils import timezone
from djstripe.enums import WebhookEndpointStatus, WebhookEndpointValidation
from djstripe.models import Account, APIKey, Event, WebhookEndpoint, WebhookEventTrigger

from ledger.chart import platform_code, user_code
from ledger.money import normalize_currency
from ledger.services import EntryLine, credit, debit, post_transaction
from splits.allocation import Allocation, allocate, allocate_cost
from splits.models import SplitRule
from splits.selectors import default_rule_for, rule_version
from splits.terms import RuleTerms
from treasury.errors import Forbidden, InvalidInput, NotFound, TreasuryError
from treasury.models import RECIPIENT_ROLES, User
from treasury.rls import system_context
from treasury.services import record_audit, snapshot
from treasury.stripe.client import as_dict, stripe_client
from treasury.stripe.models import (
    EventStatus,
    OnboardingStatus,
    StripeAccount,
    StripeCharge,
    StripeEventProcessing,
)

logger = logging.getLogger(__name__)

# The dj-stripe WebhookEndpoint row this project's /api/stripe/webhook stands for.
WEBHOOK_ENDPOINT_ID = "we_treasury"
CHARGE_EVENT_SOURCE = "stripe_charge"
MAX_ERROR_LENGTH = 2000


class InvalidWebhook(InvalidInput):
    code = "invalid_webhook"


class StripeRequestFailed(TreasuryError):
    """Stripe refused or could not be reached; nothing of ours was written."""

    status_code = 502
    code = "stripe_error"


@contextmanager
def stripe_errors_as(action: str) -> Iterator[None]:
    """Stripe's errors, for an API caller: what we tried and what Stripe said (HTTP 502)."""
    try:
        yield
    except stripe.StripeError as exc:
        raise StripeRequestFailed(f"{action}: Stripe said {exc.user_message or exc}") from exc


# --- locks ---


def lock_stripe_object(object_id: str) -> None:
    """Serialise, until the end of the transaction, everything done about one Stripe object.

    Lock order, always: a connected account, then the event's object, then the charge it is
    about (`ensure_charge_posted`). Each handler takes locks only in that order, so two
    deliveries can wait for each other but never deadlock. The key is a 64-bit hash of the
    id: two objects sharing one is vanishingly rare, and would only make them queue.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"stripe:{object_id}"]
        )


# --- webhook intake ---


def verified_event(*, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event in a webhook request, once its signature, age and JSON are checked.

    Raises InvalidWebhook (HTTP 400) before anything is stored.
    """
    if not signature:
        raise InvalidWebhook(
            "the Stripe-Signature header is missing",
            fields={"Stripe-Signature": ["required"]},
        )
    try:
        body = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidWebhook("the body is not UTF-8", fields={"body": ["not UTF-8"]}) from exc
    try:
        stripe.WebhookSignature.verify_header(
            body,
            signature,
            settings.STRIPE_WEBHOOK_SECRET,
            settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
        )
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhook(
            f"the Stripe-Signature does not verify: {exc.user_message or exc}",
            fields={"Stripe-Signature": ["invalid, or older than the tolerance"]},
        ) from exc
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise InvalidWebhook(f"malformed JSON: {exc}", fields={"body": ["malformed JSON"]}) from exc
    if not _looks_like_event(event):
        raise InvalidWebhook(
            "the body is not a Stripe event (object 'event' with an id, a type and data.object)",
            fields={"body": ["not a Stripe event"]},
        )
    return event


def _looks_like_event(event: Any) -> bool:
    return (
        isinstance(event, dict)
        and event.get("object") == "event"
        and isinstance(event.get("id"), str)
        and bool(event["id"])
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    )


def configured_webhook_endpoint(*, url: str) -> WebhookEndpoint:
    """dj-stripe's `WebhookEndpoint` row for this project's endpoint, with the secret and
    tolerance from settings. Created on first use and updated when the settings change.

    The first deliveries may arrive together: the row, dj-stripe's APIKey and its platform
    Account (`GET /v1/account`) are made under one advisory lock, so only one request
    creates them and the others find them once it commits.
    """
    endpoint = WebhookEndpoint.objects.filter(id=WEBHOOK_ENDPOINT_ID).first()
    if endpoint is not None and _endpoint_is_current(endpoint):
        return endpoint
    return _install_webhook_endpoint(url=url)


def _endpoint_is_current(endpoint: WebhookEndpoint) -> bool:
    return (
        endpoint.secret == settings.STRIPE_WEBHOOK_SECRET
        and endpoint.djstripe_tolerance == settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
        and APIKey.objects.filter(secret=settings.STRIPE_SECRET_KEY).exists()
    )


@transaction.atomic
def _install_webhook_endpoint(*, url: str) -> WebhookEndpoint:
    lock_stripe_object(WEBHOOK_ENDPOINT_ID)
    # Deliveries that found the row stale queue on the lock; the first updates it and the
    # others find it current. Only that one then holds the row's lock, which every other
    # delivery's deferred foreign-key check needs at COMMIT while it holds ledger account
    # locks: several updaters at once deadlocked with them (tests/faults, webhook storm).
    endpoint = WebhookEndpoint.objects.filter(id=WEBHOOK_ENDPOINT_ID).first()
    if endpoint is not None and _endpoint_is_current(endpoint):
        return endpoint
    endpoint, _ = WebhookEndpoint.objects.update_or_create(
        id=WEBHOOK_ENDPOINT_ID,
        defaults={
            "url": url,
            "secret": settings.STRIPE_WEBHOOK_SECRET,
            "djstripe_tolerance": settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
            "djstripe_validation_method": WebhookEndpointValidation.verify_signature,
            "enabled_events": ["*"],
            "status": WebhookEndpointStatus.enabled,
            "livemode": settings.STRIPE_LIVE_MODE,
            "metadata": {"purpose": "treasury /api/stripe/webhook"},
        },
    )
    # Stored events name the account they belong to; dj-stripe finds the platform's through
    # the API key (one GET /v1/account, then a database row).
    Account.get_or_retrieve_for_api_key(settings.STRIPE_SECRET_KEY)
    return endpoint


@transaction.atomic
def receive_webhook(*, request: HttpRequest) -> StripeEventProcessing:
    """Store and process a verified webhook request through dj-stripe (see the module's
    docstring). Call under `system_context()`, after `verified_event`."""
    endpoint = configured_webhook_endpoint(url=request.build_absolute_uri(request.path))
    trigger = WebhookEventTrigger.from_request(request, webhook_endpoint=endpoint)
    if not trigger.valid:  # checked already; only a secret changed mid-request gets here
        raise InvalidWebhook("dj-stripe could not verify the webhook")
    return trigger.treasury_processing  # type: ignore[attr-defined]


def on_webhook_trigger(trigger: WebhookEventTrigger, api_key: str | None = None) -> None:
    """DJSTRIPE_WEBHOOK_EVENT_CALLBACK: dj-stripe calls it with each verified trigger, in the
    transaction that stored the trigger."""
    processing = process_event(event=trigger.json_body, api_key=api_key)
    trigger.treasury_processing = processing  # type: ignore[attr-defined]  (the answer)
    trigger.event = Event.objects.filter(id=processing.stripe_event_id).first()
    trigger.processed = processing.status in (EventStatus.PROCESSED, EventStatus.IGNORED)
    exception_length = trigger._meta.get_field("exception").max_length
    trigger.exception = processing.last_error[:exception_length] if not trigger.processed else ""


# --- exactly-once processing ---


@transaction.atomic
def process_event(*, event: Mapping[str, Any], api_key: str | None = None) -> StripeEventProcessing:
    """Act on one Stripe event exactly once, whatever the number and order of deliveries.

    Under the advisory locks of its Stripe object: store it (dj-stripe's `Event`), skip it if
    it was processed or ignored before, else run the handler for its type in a savepoint.
    A handler that raises leaves the event `failed` with the error, and nothing it wrote;
    a redelivery, the `retry_failed_events` job or the admin's retry runs it again. The
    result's `was_duplicate` says whether an earlier delivery had already done the work.
    """
    from treasury.stripe.handlers import StripeEvent, handler_for

    parsed = StripeEvent.from_payload(event)
    with system_context():
        if parsed.account:
            lock_stripe_object(parsed.account)
        lock_stripe_object(parsed.object_id)
        _store_event(event, api_key=api_key)
        processing, _ = StripeEventProcessing.objects.get_or_create(
            stripe_event_id=parsed.id,
            defaults={
                "event_type": parsed.type,
                "stripe_object_id": parsed.object_id,
                "stripe_account_id": parsed.account or "",
            },
        )
        processing.was_duplicate = processing.status in (  # type: ignore[attr-defined]
            EventStatus.PROCESSED,
            EventStatus.IGNORED,
        )
        if processing.was_duplicate:  # type: ignore[attr-defined]
            return processing
        processing.attempts += 1
        handler = handler_for(parsed.type)
        if handler is None:
            processing.status = EventStatus.IGNORED
            processing.note = "no handler for this event type"
            processing.processed_at = timezone.now()
        else:
            try:
                with transaction.atomic():
                    note = handler(parsed)
            except Exception as exc:  # any failure is recorded, and retried later
                logger.warning("stripe event %s (%s) failed", parsed.id, parsed.type, exc_info=True)
                processing.status = EventStatus.FAILED
                processing.last_error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
            else:
                processing.status = EventStatus.PROCESSED
                processing.note = (note or "")[:255]
                processing.last_error = ""
                processing.processed_at = timezone.now()
        processing.save()
    return processing


def _store_event(event: Mapping[str, Any], *, api_key: str | None) -> None:
    """dj-stripe's record of the event (once; the caller holds the object's lock)."""
    if not Event.objects.filter(id=event["id"]).exists():
        Event._create_from_stripe_object(dict(event), api_key=api_key or settings.STRIPE_SECRET_KEY)


@transaction.atomic
def retry_event(*, processing: StripeEventProcessing, actor: User | None) -> StripeEventProcessing:
    """Run a failed (or never finished) event again, from dj-stripe's stored copy; audited."""
    before = snapshot(processing)
    with system_context():
        stored = Event.objects.filter(id=processing.stripe_event_id).first()
        if stored is None:
            raise NotFound(f"stripe event {processing.stripe_event_id} is not stored")
        result = process_event(event=stored.stripe_data)
        record_audit(
            actor=actor,
            action="stripe.event.retry",
            target=result,
            before=before,
            after=snapshot(result),
        )
    return result


def retry_failed_events(*, limit: int = 100) -> int:
    """Retry failed events that have attempts left, oldest first; returns how many were
    processed now. Each event is its own transaction: one failure does not hold the rest."""
    with system_context():
        failed = list(
            StripeEventProcessing.objects.filter(
                status=EventStatus.FAILED, attempts__lt=settings.STRIPE_EVENT_MAX_ATTEMPTS
            )
            .order_by("updated_at")
            .values_list("pk", flat=True)[:limit]
        )
    succeeded = 0
    for pk in failed:
        with system_context():
            processing = StripeEventProcessing.objects.get(pk=pk)
        result = retry_event(processing=processing, actor=None)
        succeeded += result.status == EventStatus.PROCESSED
    return succeeded


# --- charges into the ledger ---


@dataclass(frozen=True)
class ChargeTerms:
    """Whose sale a charge is and the split rule version that splits it."""

    terms: RuleTerms
    host: User
    rule: SplitRule | None


@transaction.atomic
def ensure_charge_posted(*, charge_id: str) -> StripeCharge:
    """The charge's booking, posting it first if no event has yet.

    Every event about a charge (succeeded, refunded, disputed, its payment intent) calls
    this first, so whichever arrives first books the charge and the others find it. The
    charge is read back from Stripe (with its balance transaction, for the fee) rather than
    taken from the event, which may be stale or about another object.
    """
    with system_context():
        lock_stripe_object(charge_id)
        existing = StripeCharge.objects.filter(stripe_charge_id=charge_id).first()
        if existing is not None:
            existing.was_posted_now = False  # type: ignore[attr-defined]
            return existing
        # A read under the charge's lock (no ledger row is locked yet): the fee is only in
        # the balance transaction, and Stripe's copy is the truth whatever the event said.
        charge = stripe_client().v1.charges.retrieve(
            charge_id, params={"expand": ["balance_transaction"]}
        )
        record = _book_charge(as_dict(charge))
    record.was_posted_now = True  # type: ignore[attr-defined]
    return record


def _book_charge(charge: dict[str, Any]) -> StripeCharge:
    charge_id = charge["id"]
    if charge.get("status") != "succeeded" or not charge.get("paid"):
        raise InvalidInput(
            f"charge {charge_id} has status {charge.get('status')!r}: only succeeded charges"
            " are booked"
        )
    if charge.get("captured") is False:
        raise InvalidInput(f"charge {charge_id} is authorised but not captured yet")
    currency = normalize_currency(charge.get("currency") or "")
    gross_cents = charge.get("amount_captured") or charge.get("amount")
    if not isinstance(gross_cents, int) or gross_cents <= 0:
        raise InvalidInput(f"charge {charge_id} has no captured amount")
    balance_transaction = charge.get("balance_transaction")
    if not isinstance(balance_transaction, dict):
        raise InvalidInput(f"charge {charge_id} has no balance transaction: its fee is unknown")
    if normalize_currency(balance_transaction.get("currency") or "") != currency:
        raise InvalidInput(
            f"charge {charge_id} in {currency} settled in"
            f" {str(balance_transaction.get('currency')).upper()}: the treasury does not convert"
            " currencies"
        )
    fee_cents = int(balance_transaction.get("fee") or 0)
    metadata = charge.get("metadata") or {}
    seller = _charge_terms(metadata, charge_id=charge_id)
    allocation = allocate(amount_cents=gross_cents, currency=currency, rule=seller.terms)
    fee_split = allocate_cost(
        allocation=allocation, cost_cents=fee_cents, bearer=seller.terms.stripe_fee_bearer
    )
    payment_intent = charge.get("payment_intent") or ""
    if isinstance(payment_intent, dict):
        payment_intent = payment_intent.get("id", "")
    rule_version_number = seller.rule.version if seller.rule is not None else None
    buyer = _buyer(metadata)
    posted = post_transaction(
        idempotency_key=f"charge:{charge_id}",
        entries=charge_entries(allocation=allocation, stripe_fee=fee_split),
        event_source=CHARGE_EVENT_SOURCE,
        reference_id=charge_id,
        effective_at=datetime.fromtimestamp(charge["created"], tz=UTC),
        metadata={
            "payment_intent": payment_intent,
            "split_rule_id": seller.terms.split_rule_id,
            "split_rule_version": rule_version_number,
            "host_id": str(seller.host.pk),
            "buyer_id": str(buyer.pk) if buyer else None,
            "stripe_fee_cents": fee_cents,
            "stripe_fee_bearer": str(seller.terms.stripe_fee_bearer),
        },
    )
    return StripeCharge.objects.create(
        stripe_charge_id=charge_id,
        payment_intent_id=payment_intent,
        buyer=buyer,
        host=seller.host,
        amount_cents=gross_cents,
        currency=currency,
        stripe_fee_cents=fee_cents,
        stripe_fee_bearer=str(seller.terms.stripe_fee_bearer),
        split_rule=seller.rule,
        split_rule_version=rule_version_number,
        allocation=allocation_json(allocation=allocation, stripe_fee=fee_split),
        ledger_transaction=posted,
        charged_at=datetime.fromtimestamp(charge["created"], tz=UTC),
    )


def charge_entries(*, allocation: Allocation, stripe_fee: Allocation) -> list[EntryLine]:
    """DESIGN "Charge succeeded (gross G, Stripe fee F)", as ledger lines.

    Stripe holds G: debit stripe_balance G; credit each recipient's payable and the
    platform's fee revenue by the split. Stripe keeps F: credit stripe_balance F, and debit
    whoever bears it by the rule: the platform's processing_fees, or the recipients'
    payables pro rata to what each received (`allocate_cost`, largest remainder). Parts of
    0 are left out (the ledger refuses zero amounts).
    """
    currency = allocation.currency
    lines = [debit(platform_code("stripe_balance", currency), allocation.amount_cents, currency)]
    for share in allocation.recipients:
        if share.amount_cents:
            payable = user_code(share.recipient_id, "payable", currency)
            lines.append(credit(payable, share.amount_cents, currency))
    if allocation.platform_fee_cents:
        revenue = platform_code("fee_revenue", currency)
        lines.append(credit(revenue, allocation.platform_fee_cents, currency))
    if stripe_fee.amount_cents:
        if stripe_fee.platform_fee_cents:
            expense = platform_code("processing_fees", currency)
            lines.append(debit(expense, stripe_fee.platform_fee_cents, currency))
        for share in stripe_fee.recipients:
            if share.amount_cents:
                payable = user_code(share.recipient_id, "payable", currency)
                lines.append(debit(payable, share.amount_cents, currency))
        lines.append(
            credit(platform_code("stripe_balance", currency), stripe_fee.amount_cents, currency)
        )
    return lines


def allocation_json(*, allocation: Allocation, stripe_fee: Allocation) -> dict[str, Any]:
    """The exact cents each party got and paid of the Stripe fee: what refunds unwind."""
    return {
        "amount_cents": allocation.amount_cents,
        "currency": allocation.currency,
        "platform_fee_cents": allocation.platform_fee_cents,
        "platform_stripe_fee_cents": stripe_fee.platform_fee_cents,
        "recipients": [
            {
                "recipient_id": str(share.recipient_id),
                "amount_cents": share.amount_cents,
                "stripe_fee_cents": fee.amount_cents,
            }
            for share, fee in zip(allocation.recipients, stripe_fee.recipients, strict=True)
        ],
    }


def _charge_terms(metadata: Mapping[str, Any], *, charge_id: str) -> ChargeTerms:
    """The split a charge's metadata asks for: `split_rule_id` (that exact version) or
    `host_id` (the host's default rule, else the platform's default terms)."""
    rule_ref = str(metadata.get("split_rule_id") or "").strip()
    host_ref = str(metadata.get("host_id") or "").strip()
    if rule_ref:
        if not rule_ref.isdigit():
            raise InvalidInput(
                f"charge {charge_id}: metadata split_rule_id {rule_ref!r} is not an id"
            )
        rule = rule_version(rule_id=int(rule_ref))
        if host_ref and host_ref != str(rule.owner_id):
            raise InvalidInput(
                f"charge {charge_id}: split rule {rule.pk} belongs to {rule.owner_id},"
                f" not to the metadata's host_id {host_ref}"
            )
        return ChargeTerms(terms=rule.terms, host=rule.owner, rule=rule)
    if host_ref:
        host = _user_from_metadata(host_ref, field="host_id", charge_id=charge_id)
        if host.role not in RECIPIENT_ROLES:
            raise InvalidInput(
                f"charge {charge_id}: host_id {host.pk} is a {host.role}, not a host or artist"
            )
        terms = default_rule_for(owner=host)
        rule = rule_version(rule_id=terms.split_rule_id) if terms.split_rule_id else None
        return ChargeTerms(terms=terms, host=host, rule=rule)
    raise InvalidInput(
        f"charge {charge_id} names neither split_rule_id nor host_id in its metadata:"
        " whose sale it is is unknown"
    )


def _user_from_metadata(value: str, *, field: str, charge_id: str) -> User:
    try:
        user_id = UUID(value)
    except ValueError as exc:
        raise InvalidInput(
            f"charge {charge_id}: metadata {field} {value!r} is not a user id"
        ) from exc
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        raise NotFound(f"charge {charge_id}: metadata {field} {value} is not a known user")
    return user


def _buyer(metadata: Mapping[str, Any]) -> User | None:
    """The paying user, when the metadata names one we know (the booking does not depend
    on it: a guest checkout has no buyer)."""
    try:
        buyer_id = UUID(str(metadata.get("buyer_id") or ""))
    except ValueError:
        return None
    return User.objects.filter(pk=buyer_id).first()


# --- connected accounts (Stripe Connect Express) ---


@dataclass(frozen=True)
class OnboardingLink:
    account: StripeAccount
    url: str | None  # None once there is nothing left to onboard (completed or rejected)
    created: bool


def onboarding_status_of(account: Mapping[str, Any]) -> OnboardingStatus:
    """Stripe's account flags as the seed's three statuses."""
    requirements = account.get("requirements") or {}
    if str(requirements.get("disabled_reason") or "").startswith("rejected"):
        return OnboardingStatus.REJECTED
    if (
        account.get("charges_enabled")
        and account.get("payouts_enabled")
        and account.get("details_submitted")
    ):
        return OnboardingStatus.COMPLETED
    return OnboardingStatus.PENDING


@transaction.atomic
def start_onboarding(*, user: User) -> OnboardingLink:
    """A host's or artist's Express account (created at Stripe on first call) and a link to
    Stripe's onboarding. Anyone else is refused (403).

    The account is created with an idempotency key per user, before our row is written: if
    our transaction fails after Stripe answered, the next call gets the same account back.
    """
    if user.role not in RECIPIENT_ROLES or not user.is_active:
        raise Forbidden(
            "only hosts and artists have connected Stripe accounts",
            fields={"role": [f"{user.role} cannot be paid out"]},
        )
    account = StripeAccount.objects.filter(user_id=user.pk).first()
    created = account is None
    if account is None:
        with stripe_errors_as("creating the connected account"):
            remote = stripe_client().v1.accounts.create(
                params={
                    "type": "express",
                    "country": settings.STRIPE_CONNECT_COUNTRY,
                    "email": user.email,
                    "capabilities": {
                        "card_payments": {"requested": True},
                        "transfers": {"requested": True},
                    },
                    "metadata": {"user_id": str(user.pk)},
                },
                options={"idempotency_key": f"treasury-connect-account-{user.pk}"},
            )
        account = _record_connected_account(user=user, remote=as_dict(remote))
    if account.onboarding_status != OnboardingStatus.PENDING:
        return OnboardingLink(account=account, url=None, created=created)
    with stripe_errors_as("creating the onboarding link"):
        link = stripe_client().v1.account_links.create(
            params={
                "account": account.stripe_account_id,
                "type": "account_onboarding",
                "refresh_url": settings.STRIPE_CONNECT_REFRESH_URL,
                "return_url": settings.STRIPE_CONNECT_RETURN_URL,
            }
        )
    return OnboardingLink(account=account, url=link.url, created=created)


def _record_connected_account(*, user: User, remote: Mapping[str, Any]) -> StripeAccount:
    try:
        with transaction.atomic():
            account = StripeAccount.objects.create(
                user=user, stripe_account_id=remote["id"], **_account_fields(remote)
            )
    except IntegrityError:  # a concurrent request for the same user got there first
        return StripeAccount.objects.get(user_id=user.pk)
    record_audit(
        actor=user, action="stripe.account.create", target=account, after=snapshot(account)
    )
    return account


def _account_fields(remote: Mapping[str, Any]) -> dict[str, Any]:
    requirements = remote.get("requirements") or {}
    return {
        "onboarding_status": onboarding_status_of(remote),
        "charges_enabled": bool(remote.get("charges_enabled")),
        "payouts_enabled": bool(remote.get("payouts_enabled")),
        "details_submitted": bool(remote.get("details_submitted")),
        "disabled_reason": str(requirements.get("disabled_reason") or ""),
    }


@transaction.atomic
def sync_connected_account(*, stripe_account_id: str) -> StripeAccount | None:
    """Bring a connected account's flags and onboarding status up to date (account.updated).

    The account is read back from Stripe rather than taken from the event: events may come
    in any order, and the latest state is what counts. An account we have no row for yet
    (its first event overtook the commit of the onboarding request) is recognised by the
    `user_id` our onboarding put in its metadata. A status change is audited. None when the
    account is not one of ours.
    """
    with system_context():
        remote = as_dict(stripe_client().v1.accounts.retrieve(stripe_account_id))
        account = _locked_connected_account(stripe_account_id) or _adopt_connected_account(remote)
        if account is None:
            return None
        before = snapshot(account)
        previous_status = account.onboarding_status
        for field, value in _account_fields(remote).items():
            setattr(account, field, value)
        account.save()
        if account.onboarding_status != previous_status:
            record_audit(
                actor=None,
                action=f"stripe.account.{account.onboarding_status}",
                target=account,
                before=before,
                after=snapshot(account),
                details={"stripe_account_id": stripe_account_id},
            )
    return account


def _locked_connected_account(stripe_account_id: str) -> StripeAccount | None:
    return (
        StripeAccount.objects.select_for_update()
        .filter(stripe_account_id=stripe_account_id)
        .first()
    )


def _adopt_connected_account(remote: Mapping[str, Any]) -> StripeAccount | None:
    """The row for an account our onboarding created but has not recorded yet, as pending
    (the caller then applies Stripe's flags)."""
    try:
        user_id = UUID(str((remote.get("metadata") or {}).get("user_id") or ""))
    except ValueError:
        return None
    user = User.objects.filter(pk=user_id, role__in=RECIPIENT_ROLES).first()
    if user is None:
        return None
    try:
        with transaction.atomic():
            account = StripeAccount.objects.create(user=user, stripe_account_id=remote["id"])
    except IntegrityError:  # the onboarding request committed meanwhile, or another account
        return _locked_connected_account(remote["id"])
    record_audit(
        actor=None, action="stripe.account.create", target=account, after=snapshot(account)
    )
    return account


# --- demo charges ---


@transaction.atomic
def create_demo_charge(
    *,
    buyer: User,
    host: User,
    amount_cents: int,
    currency: str,
    split_rule: SplitRule | None = None,
    actor: User | None = None,
) -> dict[str, Any]:
    """A buyer pays `host` through Stripe (a confirmed PaymentIntent with a test card).

    Nothing is booked here: Stripe's charge.succeeded webhook books it, as for a real sale.
    The metadata pins the split rule version in force now (the given one, else the host's
    default rule if it has one), so a late or retried webhook splits by the same terms.
    """
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise InvalidInput(
            "amount_cents must be a positive integer", fields={"amount_cents": ["positive integer"]}
        )
    currency = normalize_currency(currency)
    if host.role not in RECIPIENT_ROLES:
        raise InvalidInput(
            f"{host.pk} is a {host.role}: only hosts and artists sell",
            fields={"host_id": ["not a host or artist"]},
        )
    with system_context():
        rule_id = (
            split_rule.pk if split_rule is not None else default_rule_for(owner=host).split_rule_id
        )
        if split_rule is not None and split_rule.owner_id != host.pk:
            raise InvalidInput(
                f"split rule {split_rule.pk} is not {host.pk}'s",
                fields={"split_rule_id": ["belongs to another user"]},
            )
    metadata = {"host_id": str(host.pk), "buyer_id": str(buyer.pk)}
    if rule_id is not None:
        metadata["split_rule_id"] = str(rule_id)
    with stripe_errors_as("creating the payment"):
        intent = stripe_client().v1.payment_intents.create(
            params={
                "amount": amount_cents,
                "currency": currency.lower(),
                "confirm": True,
                "payment_method": "pm_card_visa",
                "description": f"Demo ticket sale by {host.display_name or host.email}",
                "metadata": metadata,
            }
        )
    result = {
        "payment_intent_id": intent.id,
        "charge_id": intent.latest_charge if isinstance(intent.latest_charge, str) else None,
        "status": intent.status,
        "amount_cents": amount_cents,
        "currency": currency,
        "metadata": metadata,
    }
    with system_context():  # also from run_demo, which has no request context
        record_audit(actor=actor, action="stripe.demo_charge.create", details=result)
    return result
