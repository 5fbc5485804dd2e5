"""Every write of the payouts app: initiate, execute (the Stripe steps), settle, fail,
reverse, and the admin's hold / approve / reject / retry.

Two phases, each step a ledger posting keyed `payout:<id>:<step>` (so each happens once):
1. `initiate_payout` (one transaction): under a per-recipient advisory lock, reads what is
   available and reserves it: `reserve` debits the recipient's payable and credits the
   platform's payout_clearing. The payable's row lock is then held until commit, and the
   availability is read again under it: two concurrent requests cannot both spend it.
2. The reservation's transaction also writes an outbox event (`payout.requested`), whose
   `payouts.execute` job (payouts/jobs.py, run by the events worker with retries, and tried
   once right after commit) runs `execute_payout`, which calls Stripe: a transfer to the
   connected account (idempotency key `payout:<id>:transfer`, transfer group
   `payout_<id>`), and for instant payouts a payout on the connected account
   (`payout:<id>:payout`). No lock is held across a Stripe call.
   - success: `settle` debits payout_clearing and credits stripe_balance with what left
     Stripe, and fee_revenue with the instant fee (standard: when the transfer exists;
     instant: when its payout is paid at Stripe);
   - failure (Stripe refuses the transfer, the payout fails at Stripe, a full reversal
     before settling): `release` reverses the reservation, and the same transaction writes
     `payout.failed`, whose jobs pull an instant payout's transfer back
     (`payout:<id>:transfer_reversal`) and tell the recipient, each on its own, so a mail
     that cannot be sent never holds the money back. A paid payout that fails after all
     (Stripe can fail a payout after `payout.paid`) is first `unsettle`d;
   - each reversal of a settled transfer (a refund clawing back a share) gives the
     recipient's payable what Stripe pulled back: one posting per Stripe reversal,
     `payout:<id>:reversal:<trr_id>`, of that reversal's amount; the payout stays paid.
Stripe events are notifications: the payout, the connected payout and the transfer are read
back from Stripe, so any order and number of deliveries end in the same books.
A step that died halfway is found again by its job's retry, or by `resume_payouts`: Stripe
answers the same transfer for the same idempotency key (and the transfer group finds it
after the key expired), so a rerun converges on exactly one transfer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

import stripe
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from events.models import Event
from events.services import deliver_after_commit, record_event
from ledger.chart import platform_code, user_code
from ledger.models import LedgerTransaction, Side
from ledger.money import format_minor, normalize_currency
from ledger.services import credit, debit, post_transaction, reverse_transaction
from payouts.models import Payout, PayoutMethod, PayoutSource, PayoutStatus
from payouts.risk import PayoutRequest, assess
from payouts.selectors import payout_balance, recipients_with_payable, unfinished_payouts
from splits.terms import BPS_WHOLE
from treasury.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidInput,
    NotFound,
)
from treasury.models import RECIPIENT_ROLES, User
from treasury.rls import system_context
from treasury.services import record_audit, snapshot
from treasury.stripe.client import as_dict, stripe_client
from treasury.stripe.models import OnboardingStatus, StripeAccount

logger = logging.getLogger(__name__)

RESERVE_SOURCE = "payout"
SETTLE_SOURCE = "payout_settlement"
RELEASE_SOURCE = "payout_release"
REVERSAL_SOURCE = "payout_transfer_reversal"
UNSETTLE_SOURCE = "payout_unsettlement"
# The outbox events whose jobs (payouts/jobs.py) carry out what a commit left owed.
PAYOUT_REQUESTED = "payout.requested"  # the Stripe steps are owed
PAYOUT_FAILED = "payout.failed"  # the transfer may need pulling back; the recipient is told
# Stripe said no for good: the payout fails. Anything else (network, 5xx, rate limits) may
# have happened or not: the payout stays as it is and is resumed later, same keys.
DEFINITIVE_STRIPE_ERRORS = (stripe.InvalidRequestError, stripe.CardError, stripe.PermissionError)
NIGHTLY_RUN_LOCK = "payouts:nightly-run"


# --- locks, keys, fault points ---


def _lock_recipient(user_id: Any) -> None:
    """Serialise, until commit, every payout decision about one recipient."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"payouts:user:{user_id}"]
        )


@contextmanager
def session_lock(name: str) -> Iterator[bool]:
    """A session-level advisory lock, tried without waiting: yields whether we got it.

    Session-level because what it guards spans several transactions (Stripe calls between
    them); a process that dies loses its connection, and PostgreSQL frees the lock.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [name])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [name])


def _execution_lock(payout_id: int) -> Any:
    return session_lock(f"payouts:execute:{payout_id}")


def fault_point(step: str) -> None:
    """Tests only (PAYOUTS_FAULT_AFTER): stop dead after `step`, to be SIGKILLed."""
    if step == settings.PAYOUTS_FAULT_AFTER:
        sys.stdout.write(f"PAYOUTS_FAULT_AFTER={step}\n")
        sys.stdout.flush()
        while True:
            time.sleep(1)


def request_hash(*, amount_cents: int | None, currency: str, method: str) -> str:
    """What makes two requests with one idempotency key the same request."""
    body = {"amount_cents": "all" if amount_cents is None else amount_cents}
    body.update(currency=currency, method=method)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def instant_fee_cents(*, amount_cents: int, currency: str) -> int:
    """The recipient's fee for an instant payout of `amount_cents`: PAYOUTS_INSTANT_FEE_BPS
    of it rounded up to the minor unit, at least the currency's minimum; 0 when the
    platform bears it."""
    if settings.PAYOUTS_INSTANT_FEE_BEARER != "recipient":
        return 0
    bps_part = -(-amount_cents * settings.PAYOUTS_INSTANT_FEE_BPS // BPS_WHOLE)
    return max(bps_part, settings.PAYOUTS_INSTANT_FEE_MINIMUM_CENTS.get(currency, 0))


def payout_minimum_cents(*, currency: str) -> int:
    return max(1, settings.PAYOUTS_MINIMUM_CENTS.get(currency, 1))


# --- phase 1: initiate (reserve) ---


def _valid_method(method: str) -> str:
    if method not in PayoutMethod.values:
        choices = ", ".join(PayoutMethod.values)
        raise InvalidInput(f"method must be one of {choices}", fields={"method": [choices]})
    return method


def _payable_account(user: User) -> StripeAccount:
    account = StripeAccount.objects.filter(user_id=user.pk).first()
    if (
        account is None
        or account.onboarding_status != OnboardingStatus.COMPLETED
        or not account.payouts_enabled
    ):
        status = account.onboarding_status if account else "none"
        raise Conflict(
            "payouts need a connected Stripe account with onboarding completed"
            f" (yours: {status}); start at POST /api/stripe/accounts/onboard",
            fields={"stripe_account": [f"onboarding {status}"]},
        )
    return account


@transaction.atomic
def initiate_payout(
    *,
    user: User,
    amount_cents: int | None,
    currency: str,
    method: str,
    idempotency_key: str,
    source: str = PayoutSource.REQUEST,
    actor: User | None = None,
    retry_of: Payout | None = None,
) -> Payout:
    """Reserve `amount_cents` (None: all that is available) of the user's payable for a
    payout, and have it executed after commit (unless risk holds it for review).

    The same idempotency key with the same request returns the first payout
    (`was_replayed`); with another amount, currency or method it is IdempotencyConflict.
    InsufficientFunds when the amount exceeds what is available; nothing is written then.
    """
    currency = normalize_currency(currency)
    method = _valid_method(method)
    if amount_cents is not None and (
        isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0
    ):
        raise InvalidInput(
            "amount_cents must be a positive integer of minor units, or 'all'",
            fields={"amount_cents": ["positive integer or 'all'"]},
        )
    key = (idempotency_key or "").strip()
    if not key or len(key) > 255:
        raise InvalidInput(
            "an idempotency key is required (at most 255 characters)",
            fields={"Idempotency-Key": ["1 to 255 characters"]},
        )
    if user.role not in RECIPIENT_ROLES or not user.is_active:
        raise Forbidden(
            "only active hosts and artists are paid out",
            fields={"role": [f"{user.role} has no payouts"]},
        )
    body_hash = request_hash(amount_cents=amount_cents, currency=currency, method=method)
    with system_context():
        _lock_recipient(user.pk)
        existing = Payout.objects.filter(user_id=user.pk, idempotency_key=key).first()
        if existing is not None:
            if existing.request_hash != body_hash:
                raise IdempotencyConflict(
                    f"idempotency key {key!r} was already used for another payout request",
                    fields={"Idempotency-Key": ["reused with a different request"]},
                )
            existing.was_replayed = True  # type: ignore[attr-defined]
            if existing.status == PayoutStatus.PENDING:  # a retried request nudges it on
                _nudge_execution(existing)
            return existing
        account = _payable_account(user)
        balance = payout_balance(user=user, currency=currency)
        available = balance.available_cents
        amount = available if amount_cents is None else amount_cents
        if amount <= 0:
            raise InsufficientFunds(
                f"nothing is available for payout in {currency}"
                f" (payable {balance.payable_cents}, maturing {balance.maturing_cents})",
                fields={"amount_cents": ["no available balance"]},
            )
        if amount > available:
            raise InsufficientFunds(
                f"{format_minor(amount, currency)} exceeds the available balance of"
                f" {format_minor(available, currency)}",
                fields={"amount_cents": [f"at most {available}"]},
            )
        fee = 0
        if method == PayoutMethod.INSTANT:
            fee = instant_fee_cents(amount_cents=amount, currency=currency)
        if fee >= amount:
            raise InvalidInput(
                f"an instant payout of {format_minor(amount, currency)} does not cover its fee"
                f" of {format_minor(fee, currency)}",
                fields={"amount_cents": [f"more than {fee}"]},
            )
        now = timezone.now()
        risk = assess(request=PayoutRequest(user, amount, currency, method, now))
        payout = Payout.objects.create(
            user=user,
            amount_cents=amount,
            fee_cents=fee,
            currency=currency,
            method=method,
            source=source,
            status=PayoutStatus.HELD if risk.should_hold else PayoutStatus.PENDING,
            risk_score=risk.score,
            risk_signals=risk.as_json(),
            idempotency_key=key,
            request_hash=body_hash,
            stripe_account_id=account.stripe_account_id,
            retry_of=retry_of,
        )
        payable = user_code(user.pk, "payable", currency)
        reservation = post_transaction(
            idempotency_key=payout.ledger_key("reserve"),
            entries=[
                debit(payable, amount, currency, must_not_go_below=balance.maturing_cents),
                credit(platform_code("payout_clearing", currency), amount, currency),
            ],
            event_source=RESERVE_SOURCE,
            reference_id=str(payout.pk),
            metadata={"payout_id": payout.pk, "method": method, "fee_cents": fee},
            created_by=actor,
        )
        # post_transaction holds the payable's row lock until we commit: nothing credits or
        # debits it meanwhile, so this read is exact (a charge booked since the first read
        # raised payable and maturing alike).
        after = payout_balance(user=user, currency=currency)
        if after.payable_cents < after.maturing_cents:
            raise InsufficientFunds(
                f"{format_minor(amount, currency)} exceeds the available balance",
                fields={"amount_cents": ["exceeds the available balance"]},
            )
        payout.ledger_transaction = reservation
        payout.ledger_entry = reservation.entries.get(account__code=payable, type=Side.DEBIT)
        payout.save(update_fields=["ledger_transaction", "ledger_entry", "updated_at"])
        record_audit(
            actor=actor or (user if source == PayoutSource.REQUEST else None),
            action="payout.held" if payout.status == PayoutStatus.HELD else "payout.initiate",
            target=payout,
            after=snapshot(payout),
            details={"risk_score": risk.score, "risk_signals": risk.as_json()},
        )
        if payout.status == PayoutStatus.PENDING:
            _request_execution(payout, reason="initiated")
    payout.was_replayed = False  # type: ignore[attr-defined]
    return payout


def _subject(payout: Payout) -> str:
    return f"payout:{payout.pk}"


def _request_execution(payout: Payout, *, reason: str) -> None:
    """The payout's Stripe steps are owed: say so in the outbox, in the caller's transaction,
    so that they happen even if this process dies right after the commit."""
    event_id = record_event(
        type=PAYOUT_REQUESTED,
        subject=_subject(payout),
        payload={"payout_id": payout.pk, "reason": reason},
    )
    deliver_after_commit(event_id=event_id)


def _nudge_execution(payout: Payout) -> None:
    """Try the payout's owed steps again right after commit (its job is durable already)."""
    event_id = (
        Event.objects.filter(subject=_subject(payout), type=PAYOUT_REQUESTED)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    if event_id is not None:
        deliver_after_commit(event_id=event_id)


def owes_stripe_steps(payout: Payout) -> bool:
    """Whether `execute_payout` still has something to ask of Stripe for the payout."""
    return (
        payout.status == PayoutStatus.PENDING
        or (
            payout.status == PayoutStatus.IN_FLIGHT
            and payout.method == PayoutMethod.INSTANT
            and not payout.stripe_payout_id
        )
        or _owes_transfer_reversal(payout)
    )


# --- phase 2: the Stripe steps ---


def _load(payout_id: int, *, lock: bool = False) -> Payout:
    rows = Payout.objects.select_for_update() if lock else Payout.objects.all()
    payout = rows.filter(pk=payout_id).first()
    if payout is None:
        raise NotFound(f"payout {payout_id} not found")
    return payout


def execute_payout(*, payout_id: int) -> Payout:
    """Do whatever Stripe steps the payout still owes, and record each answer.

    Safe to call at any time, any number of times, from any process: one executor at a
    time per payout (a session advisory lock; a busy payout is skipped), each step checks
    what is already recorded, and each Stripe call is idempotent.
    """
    with _execution_lock(payout_id) as acquired:
        with system_context():
            payout = _load(payout_id)
        if not acquired:
            return payout
        if payout.status == PayoutStatus.PENDING:
            fault_point("reservation")
            try:
                transfer = _find_or_create_transfer(payout)
            except DEFINITIVE_STRIPE_ERRORS as exc:
                return fail_payout(
                    payout_id=payout_id,
                    code=getattr(exc, "code", None) or "transfer_failed",
                    reason=f"Stripe refused the transfer: {exc.user_message or exc}",
                )
            except stripe.StripeError:
                logger.warning("payout %s: transfer not confirmed; resumed later", payout_id)
                return payout
            fault_point("transfer")
            payout = record_transfer(payout_id=payout_id, transfer=transfer)
        if (
            payout.status == PayoutStatus.IN_FLIGHT
            and payout.method == PayoutMethod.INSTANT
            and not payout.stripe_payout_id
        ):
            try:
                remote = _find_or_create_connected_payout(payout)
            except DEFINITIVE_STRIPE_ERRORS as exc:
                return fail_payout(
                    payout_id=payout_id,
                    code=getattr(exc, "code", None) or "payout_failed",
                    reason=f"Stripe refused the instant payout: {exc.user_message or exc}",
                )
            except stripe.StripeError:
                logger.warning("payout %s: instant payout not confirmed; resumed", payout_id)
                return payout
            payout = record_connected_payout(payout_id=payout_id, remote=remote)
        if _owes_transfer_reversal(payout):
            payout = _pull_back_transfer(payout)
        return payout


def _find_or_create_transfer(payout: Payout) -> dict[str, Any]:
    client = stripe_client()
    found = client.v1.transfers.list(params={"transfer_group": payout.transfer_group, "limit": 1})
    if found.data:
        return as_dict(found.data[0])
    transfer = client.v1.transfers.create(
        params={
            "amount": payout.net_cents,
            "currency": payout.currency.lower(),
            "destination": payout.stripe_account_id,
            "transfer_group": payout.transfer_group,
            "description": f"Treasury payout {payout.pk}",
            "metadata": {"payout_id": str(payout.pk), "user_id": str(payout.user_id)},
        },
        options={"idempotency_key": payout.ledger_key("transfer")},
    )
    return as_dict(transfer)


def _find_or_create_connected_payout(payout: Payout) -> dict[str, Any]:
    client = stripe_client()
    on_account = {"stripe_account": payout.stripe_account_id}
    since = int(payout.initiated_at.timestamp()) - 60
    recent = client.v1.payouts.list(
        params={"limit": 100, "created": {"gte": since}}, options=on_account
    )
    for remote in recent.data:
        if (remote.get("metadata") or {}).get("payout_id") == str(payout.pk):
            return as_dict(remote)
    created = client.v1.payouts.create(
        params={
            "amount": payout.net_cents,
            "currency": payout.currency.lower(),
            "method": "instant",
            "description": f"Treasury instant payout {payout.pk}",
            "metadata": {"payout_id": str(payout.pk), "user_id": str(payout.user_id)},
        },
        options={**on_account, "idempotency_key": payout.ledger_key("payout")},
    )
    return as_dict(created)


@transaction.atomic
def record_transfer(*, payout_id: int, transfer: Mapping[str, Any]) -> Payout:
    """Stripe made the transfer: a standard payout is paid (clearing settled), an instant
    one is in flight until its connected-account payout is paid."""
    with system_context():
        payout = _load(payout_id, lock=True)
        if payout.stripe_transfer_id and payout.stripe_transfer_id != transfer["id"]:
            raise Conflict(f"payout {payout.pk} already has transfer {payout.stripe_transfer_id}")
        if int(transfer["amount"]) != payout.net_cents:
            raise Conflict(f"transfer {transfer['id']} is not for payout {payout.pk}'s amount")
        if payout.status != PayoutStatus.PENDING:
            return payout
        before = snapshot(payout)
        payout.stripe_transfer_id = transfer["id"]
        if payout.method == PayoutMethod.STANDARD:
            _settle(payout)
        else:
            payout.status = PayoutStatus.IN_FLIGHT
        payout.save()
        record_audit(
            actor=None,
            action=f"payout.{payout.status}",
            target=payout,
            before=before,
            after=snapshot(payout),
            details={"stripe_transfer_id": transfer["id"]},
        )
    return payout


def sync_connected_payout(*, payout_id: int, stripe_payout_id: str) -> Payout:
    """Bring the payout up to its connected-account payout as Stripe has it now (payout.paid
    and payout.failed say only that something changed: they come in any order, any number
    of times, and Stripe can fail a payout after it was paid). Paid settles it, failed or
    canceled fails it (a paid one too), pending or in transit changes nothing.

    The read happens before any row or ledger lock is taken."""
    with system_context():
        payout = _load(payout_id)
    remote = stripe_client().v1.payouts.retrieve(
        stripe_payout_id, options={"stripe_account": payout.stripe_account_id}
    )
    return record_connected_payout(payout_id=payout_id, remote=as_dict(remote))


@transaction.atomic
def record_connected_payout(*, payout_id: int, remote: Mapping[str, Any]) -> Payout:
    """Stripe's copy of the payout's connected-account payout (read back, or its answer to
    our request): record its id, then settle or fail the payout as it says."""
    with system_context():
        payout = _load(payout_id, lock=True)
        if payout.stripe_payout_id and payout.stripe_payout_id != remote["id"]:
            raise Conflict(
                f"payout {payout.pk} already has Stripe payout {payout.stripe_payout_id}"
            )
        if not payout.stripe_payout_id:
            payout.stripe_payout_id = remote["id"]
            payout.save(update_fields=["stripe_payout_id", "updated_at"])
    if remote.get("status") == "paid":
        return settle_payout(payout_id=payout_id, stripe_payout_id=remote["id"])
    if remote.get("status") in ("failed", "canceled"):
        code = str(remote.get("failure_code") or remote["status"])
        message = str(remote.get("failure_message") or f"the payout was {remote['status']}")
        return fail_payout(payout_id=payout_id, code=code, reason=f"{message} ({code})")
    return payout


def _settle(payout: Payout) -> LedgerTransaction:
    """Clearing -> Stripe balance (what left Stripe) and fee revenue (the instant fee), as
    one posting: one set of account locks, taken in the ledger's order."""
    currency = payout.currency
    lines = [
        debit(platform_code("payout_clearing", currency), payout.amount_cents, currency),
        credit(platform_code("stripe_balance", currency), payout.net_cents, currency),
    ]
    if payout.fee_cents:
        lines.append(credit(platform_code("fee_revenue", currency), payout.fee_cents, currency))
    posted = post_transaction(
        idempotency_key=payout.ledger_key("settle"),
        entries=lines,
        event_source=SETTLE_SOURCE,
        reference_id=payout.stripe_payout_id or payout.stripe_transfer_id,
        metadata={"payout_id": payout.pk, "fee_cents": payout.fee_cents},
    )
    payout.status = PayoutStatus.PAID
    payout.completed_at = timezone.now()
    return posted


@transaction.atomic
def settle_payout(*, payout_id: int, stripe_payout_id: str | None = None) -> Payout:
    """The money reached the recipient (payout.paid): settle clearing. Idempotent."""
    with system_context():
        payout = _load(payout_id, lock=True)
        if payout.status == PayoutStatus.PAID:
            return payout
        if payout.status != PayoutStatus.IN_FLIGHT:
            raise Conflict(f"payout {payout.pk} is {payout.status}: it cannot be paid")
        before = snapshot(payout)
        if stripe_payout_id and not payout.stripe_payout_id:
            payout.stripe_payout_id = stripe_payout_id
        _settle(payout)
        payout.save()
        record_audit(
            actor=None, action="payout.paid", target=payout, before=before, after=snapshot(payout)
        )
    return payout


@transaction.atomic
def fail_payout(*, payout_id: int, code: str, reason: str, actor: User | None = None) -> Payout:
    """The payout did not happen: release the reservation (payable gets every cent back),
    record why. A paid payout that failed after all (the bank sent it back) is unsettled
    first. The same transaction writes `payout.failed`: its jobs pull an instant payout's
    transfer back from the connected account and tell the recipient, each retried on its
    own. Idempotent: a failed payout stays as it is."""
    with system_context():
        payout = _load(payout_id, lock=True)
        if payout.status in (PayoutStatus.FAILED, PayoutStatus.CANCELLED):
            return payout
        before = snapshot(payout)
        if payout.status == PayoutStatus.PAID:
            _unsettle(payout)
        _release(payout, event_source=RELEASE_SOURCE, actor=actor)
        payout.status = PayoutStatus.FAILED
        payout.failure_code = code[:100]
        payout.failure_reason = reason
        payout.completed_at = timezone.now()
        payout.save()
        record_audit(
            actor=actor,
            action="payout.failed",
            target=payout,
            before=before,
            after=snapshot(payout),
            details={"code": code, "reason": reason},
        )
        event_id = record_event(
            type=PAYOUT_FAILED,
            subject=_subject(payout),
            payload={"payout_id": payout.pk, "code": payout.failure_code},
        )
    deliver_after_commit(event_id=event_id)
    return payout


def _unsettle(payout: Payout) -> LedgerTransaction:
    """Undo a paid payout's settlement (`payout:<id>:unsettle`), so that clearing holds its
    reservation again for `release`: Stripe's balance gets back what the transfer still
    carries (the pull-back reverses it), fee revenue the instant fee (earned only by a
    payout that reached the bank), and what was already reversed from the transfer and
    booked to payable (a refund's claw-back) is taken from payable again, since `release`
    gives the whole reservation back."""
    currency = payout.currency
    already_back = min(payout.reversed_cents, payout.net_cents)
    lines = [credit(platform_code("payout_clearing", currency), payout.amount_cents, currency)]
    if payout.net_cents - already_back:
        stripe_balance = platform_code("stripe_balance", currency)
        lines.append(debit(stripe_balance, payout.net_cents - already_back, currency))
    if already_back:
        lines.append(debit(user_code(payout.user_id, "payable", currency), already_back, currency))
    if payout.fee_cents:
        lines.append(debit(platform_code("fee_revenue", currency), payout.fee_cents, currency))
    return post_transaction(
        idempotency_key=payout.ledger_key("unsettle"),
        entries=lines,
        event_source=UNSETTLE_SOURCE,
        reference_id=payout.stripe_payout_id or payout.stripe_transfer_id,
        metadata={"payout_id": payout.pk, "reversed_cents": already_back},
    )


def _release(payout: Payout, *, event_source: str, actor: User | None) -> LedgerTransaction:
    assert payout.ledger_transaction is not None  # written with the payout
    return reverse_transaction(
        transaction=payout.ledger_transaction,
        idempotency_key=payout.ledger_key("release"),
        event_source=event_source,
        reference_id=str(payout.pk),
        metadata={"payout_id": payout.pk},
        created_by=actor,
    )


def _owes_transfer_reversal(payout: Payout) -> bool:
    """A failed payout whose money may still sit on the connected account."""
    return (
        payout.status == PayoutStatus.FAILED
        and bool(payout.stripe_transfer_id)
        and not payout.stripe_transfer_reversal_id
        and payout.reversed_cents < payout.net_cents
    )


def fetch_transfer(transfer_id: str) -> dict[str, Any]:
    """The transfer as Stripe has it now, with every one of its reversals (the transfer's
    own list stops at ten). Call it with no lock held."""
    client = stripe_client()
    transfer = as_dict(client.v1.transfers.retrieve(transfer_id))
    listed = transfer.get("reversals") or {}
    if listed.get("has_more") or not isinstance(listed.get("data"), list):
        page = client.v1.transfers.reversals.list(transfer_id, params={"limit": 100})
        data = [as_dict(reversal) for reversal in page.auto_paging_iter()]
        transfer["reversals"] = {"object": "list", "data": data, "has_more": False}
    return transfer


def _pull_back_transfer(payout: Payout) -> Payout:
    """Reverse what is left of the failed payout's transfer (its reservation is already
    released: the money belongs to the recipient's payable again)."""
    try:
        client = stripe_client()
        transfer = fetch_transfer(payout.stripe_transfer_id or "")
        remaining = int(transfer["amount"]) - int(transfer.get("amount_reversed") or 0)
        reversal_id = ""
        if remaining > 0:
            reversal = client.v1.transfers.reversals.create(
                payout.stripe_transfer_id,
                params={"amount": remaining, "metadata": {"payout_id": str(payout.pk)}},
                options={"idempotency_key": payout.ledger_key("transfer_reversal")},
            )
            reversal_id = reversal.id
            transfer = fetch_transfer(payout.stripe_transfer_id or "")
        else:
            data = (transfer.get("reversals") or {}).get("data") or []
            reversal_id = data[0]["id"] if data else "already reversed"
    except stripe.StripeError:
        logger.exception("payout %s: the transfer could not be pulled back yet", payout.pk)
        return payout
    with transaction.atomic(), system_context():
        locked = record_transfer_reversals(payout_id=payout.pk, transfer=transfer)
        if not locked.stripe_transfer_reversal_id:
            locked.stripe_transfer_reversal_id = reversal_id
            locked.save(update_fields=["stripe_transfer_reversal_id", "updated_at"])
    return locked


def sync_transfer_reversals(*, payout_id: int, transfer_id: str) -> Payout:
    """transfer.reversed says only that the payout's transfer changed: read it back from
    Stripe (its reversals with it) and book what Stripe has, whatever order and number of
    events told us."""
    return record_transfer_reversals(payout_id=payout_id, transfer=fetch_transfer(transfer_id))


@transaction.atomic
def record_transfer_reversals(*, payout_id: int, transfer: Mapping[str, Any]) -> Payout:
    """Book the reversals of the payout's transfer, as Stripe has them (`fetch_transfer`):
    one posting per reversal, `payout:<id>:reversal:<trr_id>`, of that reversal's own amount,
    so a reversal is booked once whichever event or answer brought it. Idempotent.

    - failed or cancelled payout: the reversals are the money we pulled back (released to
      payable already): nothing to book; `reversed_cents` says how much came back.
    - paid payout: each reversal gives the recipient's payable what Stripe pulled back (a
      refund's claw-back, an ops correction): Stripe balance -> payable. The payout stays
      paid, it happened.
    - not settled yet: a full reversal fails the payout (release); a partial one cannot be
      booked before the payout settles (Conflict: the event is retried later).
    """
    reversals = [
        (str(item["id"]), int(item["amount"]))
        for item in (transfer.get("reversals") or {}).get("data") or []
    ]
    reversed_cents = sum(amount for _, amount in reversals)
    with system_context():
        payout = _load(payout_id, lock=True)
        if payout.stripe_transfer_id != transfer.get("id"):
            raise Conflict(
                f"transfer {transfer.get('id')} is not the recorded transfer of payout"
                f" {payout.pk} ({payout.stripe_transfer_id or 'none yet'})"
            )
        if reversed_cents > payout.net_cents:
            raise Conflict(f"{reversed_cents} reversed exceeds payout {payout.pk}'s net")
        if payout.status in (PayoutStatus.PENDING, PayoutStatus.IN_FLIGHT):
            if reversed_cents == 0:
                return payout
            if reversed_cents != payout.net_cents:
                raise Conflict(
                    f"payout {payout.pk} is {payout.status}: a partial reversal is booked once"
                    " it settles"
                )
            payout.stripe_transfer_reversal_id = reversals[-1][0]
            payout.save(update_fields=["stripe_transfer_reversal_id", "updated_at"])
            payout = fail_payout(
                payout_id=payout.pk, code="transfer_reversed", reason="Stripe reversed the transfer"
            )
        elif payout.status == PayoutStatus.PAID:
            _book_transfer_reversals(payout, reversals)
        elif payout.status not in (PayoutStatus.FAILED, PayoutStatus.CANCELLED):
            raise Conflict(f"payout {payout.pk} is {payout.status}: nothing to reverse")
        if reversed_cents > payout.reversed_cents:
            payout.reversed_cents = reversed_cents
            payout.save(update_fields=["reversed_cents", "updated_at"])
    return payout


def _book_transfer_reversals(payout: Payout, reversals: Sequence[tuple[str, int]]) -> None:
    currency = payout.currency
    keys = {
        reversal_id: payout.ledger_key(f"reversal:{reversal_id}") for reversal_id, _ in reversals
    }
    booked = set(
        LedgerTransaction.objects.filter(idempotency_key__in=keys.values()).values_list(
            "idempotency_key", flat=True
        )
    )
    for reversal_id, amount_cents in reversals:
        if keys[reversal_id] in booked or amount_cents <= 0:
            continue
        before = snapshot(payout)
        post_transaction(
            idempotency_key=keys[reversal_id],
            entries=[
                debit(platform_code("stripe_balance", currency), amount_cents, currency),
                credit(user_code(payout.user_id, "payable", currency), amount_cents, currency),
            ],
            event_source=REVERSAL_SOURCE,
            reference_id=reversal_id,
            metadata={
                "payout_id": payout.pk,
                "stripe_transfer_id": payout.stripe_transfer_id,
                "stripe_reversal_id": reversal_id,
            },
        )
        payout.reversed_cents += amount_cents
        payout.save(update_fields=["reversed_cents", "updated_at"])
        record_audit(
            actor=None,
            action="payout.transfer_reversed",
            target=payout,
            before=before,
            after=snapshot(payout),
            details={"stripe_reversal_id": reversal_id, "amount_cents": amount_cents},
        )


def notify_payout_failed(*, payout_id: int) -> None:
    """Tell the recipient by mail (the `payouts.notify_failed` job: a mail that cannot be
    sent is retried on its own, and holds no money step back)."""
    with system_context():
        payout = Payout.objects.select_related("user").get(pk=payout_id)
    amount = format_minor(payout.amount_cents, payout.currency)
    logger.warning("payout %s of %s failed: %s", payout.pk, amount, payout.failure_reason)
    send_mail(
        subject=f"Your payout of {amount} failed",
        message=(
            f"Your payout {payout.pk} of {amount} did not go through: {payout.failure_reason}\n"
            "The money is back in your available balance."
        ),
        from_email=None,
        recipient_list=[payout.user.email],
    )


# --- review (admin) ---


def _require_admin(actor: User) -> None:
    if not actor.is_admin:
        raise Forbidden("only admins review payouts")


def hold_payout(*, payout_id: int, actor: User, note: str = "") -> Payout:
    """Stop a pending payout before its transfer, for review. Under the payout's execution
    lock (no executor can be calling Stripe meanwhile), Stripe is asked first: a transfer
    it already made (an executor that crashed) is recorded instead, and that is a 409."""
    _require_admin(actor)
    with _execution_lock(payout_id) as acquired:
        if not acquired:
            raise Conflict(f"payout {payout_id} is being executed right now; try again")
        with system_context():
            payout = _load(payout_id)
        if payout.status != PayoutStatus.PENDING:
            raise Conflict(f"payout {payout.pk} is {payout.status}: only pending ones are held")
        found = stripe_client().v1.transfers.list(
            params={"transfer_group": payout.transfer_group, "limit": 1}
        )
        if found.data:
            record_transfer(payout_id=payout.pk, transfer=as_dict(found.data[0]))
            raise Conflict(f"payout {payout.pk} was already transferred: it cannot be held")
        with transaction.atomic(), system_context():
            payout = _load(payout_id, lock=True)
            if payout.status != PayoutStatus.PENDING:
                raise Conflict(f"payout {payout.pk} is {payout.status}: only pending ones are held")
            before = snapshot(payout)
            payout.status = PayoutStatus.HELD
            payout.save(update_fields=["status", "updated_at"])
            record_audit(
                actor=actor,
                action="payout.hold",
                target=payout,
                before=before,
                after=snapshot(payout),
                details={"note": note},
            )
    return payout


@transaction.atomic
def approve_payout(*, payout_id: int, actor: User, note: str = "") -> Payout:
    """Release a held payout: it is executed after commit."""
    _require_admin(actor)
    with system_context():
        payout = _load(payout_id, lock=True)
        if payout.status != PayoutStatus.HELD:
            raise Conflict(f"payout {payout.pk} is {payout.status}: only held ones are approved")
        before = snapshot(payout)
        payout.status = PayoutStatus.PENDING
        payout.reviewed_by = actor
        payout.reviewed_at = timezone.now()
        payout.save(update_fields=["status", "reviewed_by", "reviewed_at", "updated_at"])
        record_audit(
            actor=actor,
            action="payout.approve",
            target=payout,
            before=before,
            after=snapshot(payout),
            details={"note": note},
        )
        _request_execution(payout, reason="approved")
    return payout


@transaction.atomic
def reject_payout(*, payout_id: int, actor: User, reason: str) -> Payout:
    """Refuse a held payout: the reservation is released, nothing is sent."""
    _require_admin(actor)
    reason = (reason or "").strip() or "rejected on review"
    with system_context():
        payout = _load(payout_id, lock=True)
        if payout.status != PayoutStatus.HELD:
            raise Conflict(f"payout {payout.pk} is {payout.status}: only held ones are rejected")
        before = snapshot(payout)
        _release(payout, event_source=RELEASE_SOURCE, actor=actor)
        payout.status = PayoutStatus.CANCELLED
        payout.failure_code = "rejected"
        payout.failure_reason = reason
        payout.reviewed_by = actor
        payout.reviewed_at = payout.completed_at = timezone.now()
        payout.save()
        record_audit(
            actor=actor,
            action="payout.reject",
            target=payout,
            before=before,
            after=snapshot(payout),
            details={"reason": reason},
        )
    return payout


def retry_payout(*, payout_id: int, actor: User) -> Payout:
    """Pending or in flight: run its Stripe steps again (audited). Failed: a new payout of
    the same amount, currency and method (if still available), linked by `retry_of`."""
    _require_admin(actor)
    with system_context():
        payout = _load(payout_id)
    if payout.status in (PayoutStatus.PENDING, PayoutStatus.IN_FLIGHT):
        with transaction.atomic(), system_context():
            record_audit(actor=actor, action="payout.resume", target=payout)
        return execute_payout(payout_id=payout.pk)
    if payout.status != PayoutStatus.FAILED:
        raise Conflict(f"payout {payout.pk} is {payout.status}: nothing to retry")
    with transaction.atomic():
        with system_context():
            user = User.objects.get(pk=payout.user_id)
        retried = initiate_payout(
            user=user,
            amount_cents=payout.amount_cents,
            currency=payout.currency,
            method=payout.method,
            idempotency_key=f"retry:{payout.pk}",
            source=PayoutSource.RETRY,
            actor=actor,
            retry_of=payout,
        )
        with system_context():
            record_audit(
                actor=actor,
                action="payout.retry",
                target=payout,
                details={"new_payout_id": retried.pk},
            )
    return retried


# --- jobs ---


def resume_payouts(*, user_ids: Sequence[str] | None = None, limit: int = 500) -> int:
    """Run the Stripe steps of every unfinished payout (a crash, Stripe unreachable), or
    only those of `user_ids`; returns how many changed status."""
    with system_context():
        rows = unfinished_payouts()
        if user_ids is not None:
            rows = rows.filter(user_id__in=user_ids)
        rows = list(rows.values_list("pk", "status")[:limit])
    changed = 0
    for pk, status in rows:
        changed += execute_payout(payout_id=pk).status != status
    return changed


@transaction.atomic
def request_nightly_run(*, actor: User) -> None:
    """Run the nightly payouts now (ops, from the admin): audited, and handed to django-q2
    once committed. Safe to press twice: the run's advisory lock and each payout's
    per-night key keep a second run from paying anyone again."""
    if not actor.is_admin:
        raise Forbidden("only admins may start the payout run")
    record_audit(
        actor=actor,
        action="payout.nightly_run_requested",
        details={"run_date": timezone.now().date().isoformat()},
    )
    # An in-process callback on purpose: it may be lost. It only queues a run now; nothing
    # is owed to anyone by it (the nightly schedule runs the same payouts, and each payout,
    # once initiated, carries its own durable job).
    transaction.on_commit(enqueue_nightly_run)


def enqueue_nightly_run() -> str:
    from django_q.tasks import async_task

    return str(
        async_task(
            "payouts.tasks.run_scheduled_payouts", task_name="payouts-run-now", group="payouts"
        )
    )


def run_scheduled_payouts(
    *, run_date: date | None = None, user_ids: Sequence[str] | None = None
) -> dict[str, int]:
    """The nightly run: one standard payout per recipient and currency whose available
    balance reaches the minimum (every recipient, or only `user_ids`). One run at a time
    (session advisory lock); a run that died is safe to repeat: unfinished payouts are
    resumed first, and each payout's key (`scheduled:<date>:<currency>`) makes a second run
    that night find the first's."""
    run_date = run_date or timezone.now().date()
    result = {"skipped": 0, "resumed": 0, "initiated": 0, "held": 0, "below_minimum": 0}
    with session_lock(NIGHTLY_RUN_LOCK) as acquired:
        if not acquired:
            result["skipped"] = 1
            logger.info("payouts: another run holds the lock; this one does nothing")
            return result
        result["resumed"] = resume_payouts(user_ids=user_ids)
        with system_context():
            candidates = recipients_with_payable()
        if user_ids is not None:
            wanted = {str(user_id) for user_id in user_ids}
            candidates = [(u, c) for u, c in candidates if u in wanted]
        for user_id, currency in candidates:
            with system_context():
                user = User.objects.filter(pk=user_id).first()
                account = StripeAccount.objects.filter(user_id=user_id).first()
                if (
                    user is None
                    or user.role not in RECIPIENT_ROLES
                    or not user.is_active
                    or account is None
                    or account.onboarding_status != OnboardingStatus.COMPLETED
                ):
                    continue
                available = payout_balance(user=user, currency=currency).available_cents
            key = f"scheduled:{run_date.isoformat()}:{currency}"
            if available < payout_minimum_cents(currency=currency):
                result["below_minimum"] += 1
                continue
            try:
                payout = initiate_payout(
                    user=user,
                    amount_cents=None,
                    currency=currency,
                    method=PayoutMethod.STANDARD,
                    idempotency_key=key,
                    source=PayoutSource.SCHEDULE,
                )
            except (InsufficientFunds, Conflict) as exc:
                logger.info("payouts: %s %s skipped: %s", user_id, currency, exc)
                continue
            if not getattr(payout, "was_replayed", False):
                result["held" if payout.status == PayoutStatus.HELD else "initiated"] += 1
    return result
