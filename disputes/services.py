"""Every write of refunds and disputes: money going back to buyers, exactly.

Refunds, in order:
1. `request_refund` (one transaction, under the charge's advisory lock): checks who may
   refund what (a buyer their own charge, within REFUNDS_BUYER_WINDOW_DAYS and
   REFUNDS_BUYER_POLICY; an admin any), that the amount is left to refund, in the charge's
   currency, and that no dispute stops it; writes the refund `pending`. The refunds of a
   charge can never exceed it: the lock serialises them, and PostgreSQL refuses it anyway.
   The same transaction writes the outbox event `refund.requested`.
2. That event's job (`disputes.send_refund`, disputes/jobs.py: run by the events worker with
   retries, and tried once right after commit) calls `send_refund_to_stripe`, which creates
   it at Stripe (idempotency key `treasury-refund-<id>`, and our id in its metadata so an
   answer we lost is found again). A refusal fails it; no answer leaves it for the retry
   (and `resume_refunds`).
3. `record_stripe_refund` (Stripe's answer, or the refund.* / charge.refunded events, in any
   order, any number of times: the refund is read back from Stripe, the event's copy decides
   nothing) books it once Stripe has taken the money: `refund:<re_id>`
   reverses the charge's split pro rata, cumulatively (disputes.shares), so partial refunds
   that add up to the charge give every party back exactly what it got:
       credit platform stripe_balance R; debit each recipient's payable its share;
       debit platform fee_revenue the platform's share (REFUNDS_PLATFORM_REFUNDS_FEE; else
       the recipients carry it pro rata); and when the platform absorbs Stripe's kept fee
       (REFUNDS_PLATFORM_ABSORBS_STRIPE_FEE), debit processing_fees and credit back the
       recipients' share of it.
   A refund that fails after it was booked is booked back (`refund:<re_id>:failed`).
4. A recipient already paid out goes below zero on their payable: that is a debt, which
   their next earnings pay first (payouts' available balance is never below zero). The
   booking writes `refund.booked`, whose job (`disputes.recover_shortfalls`) runs
   `recover_refund_shortfalls`: it pulls that shortfall back from their paid transfers (a
   Stripe transfer reversal, booked by payouts' `record_transfer_reversals`, one posting per
   reversal); what Stripe refuses (balance_insufficient) stays a debt, written on the refund.

Disputes (`sync_dispute`, from every charge.dispute.* event; the dispute is read back from
Stripe, so the order and number of deliveries do not matter):
- opened `dispute:<dp>:opened`: Stripe took the disputed funds D and its fee X: credit
  stripe_balance D + X, debit platform dispute_losses; each recipient's share of D (pro rata,
  after what was refunded) moves from payable to held; if recipients bear the fee
  (DISPUTES_FEE_BEARER) their share of X is debited from payable to dispute_losses.
- won `dispute:<dp>:won`: the funds come back (debit stripe_balance, credit dispute_losses)
  and the holds are released to payable. Stripe keeps the fee.
- lost `dispute:<dp>:lost`: by the split rule's dispute_loss_bearer: `platform` releases the
  holds (the platform's dispute_losses bears D); `recipients` consumes them (held -> credit
  dispute_losses), so each recipient loses their pro-rata share and the platform its own.
A dispute whose charge cannot be booked yet fails its event, which the webhook intake keeps
and retries (`retry_failed_events`) until the charge is known.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from disputes import selectors
from disputes.models import (
    Dispute,
    DisputeNote,
    DisputeStatus,
    Refund,
    RefundReason,
    RefundStatus,
    RefundTransferReversal,
    ReversalStatus,
)
from disputes.shares import ChargeSplit, RefundShares, dispute_shares, refunded_shares
from events.models import Event
from events.services import deliver_after_commit, record_event
from ledger.chart import platform_code, user_code
from ledger.money import format_minor, normalize_currency
from ledger.selectors import account_balance
from ledger.services import EntryLine, credit, debit, post_transaction
from payouts.services import fetch_transfer, record_transfer_reversals
from splits.selectors import rule_version
from splits.services import platform_default_terms
from splits.terms import Bearer
from treasury.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    TreasuryError,
)
from treasury.models import User
from treasury.rls import system_context
from treasury.services import record_audit, snapshot
from treasury.stripe.client import as_dict, stripe_client
from treasury.stripe.models import StripeCharge
from treasury.stripe.services import ensure_charge_posted, lock_stripe_object

logger = logging.getLogger(__name__)

# The outbox events whose jobs (disputes/jobs.py) carry out what a commit left owed.
REFUND_REQUESTED = "refund.requested"  # the refund is to be created at Stripe
REFUND_BOOKED = "refund.booked"  # recipients already paid out: pull their share back
REFUND_SOURCE = "refund"
DISPUTE_SOURCE = "dispute"
MAX_NOTE_LENGTH = 5000
# Stripe said no for good: the refund or reversal fails. Anything else (network, 5xx, rate
# limits) may have happened or not: it is resumed later with the same idempotency key.
DEFINITIVE_STRIPE_ERRORS = (stripe.InvalidRequestError, stripe.CardError, stripe.PermissionError)
# Stripe's refund statuses as ours. The money leaves Stripe's balance when the refund is
# created, pending or not: it is booked then; `failed` after that books it back.
STRIPE_REFUND_STATUS = {
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}
# How far a dispute has got; a read of Stripe never moves one back.
DISPUTE_PROGRESS = {
    DisputeStatus.WARNING_NEEDS_RESPONSE: 0,
    DisputeStatus.WARNING_UNDER_REVIEW: 1,
    DisputeStatus.NEEDS_RESPONSE: 2,
    DisputeStatus.UNDER_REVIEW: 3,
    DisputeStatus.WARNING_CLOSED: 4,
    DisputeStatus.PREVENTED: 4,
    DisputeStatus.WON: 4,
    DisputeStatus.LOST: 4,
}
INQUIRY_STATUSES = (
    DisputeStatus.WARNING_NEEDS_RESPONSE,
    DisputeStatus.WARNING_UNDER_REVIEW,
    DisputeStatus.WARNING_CLOSED,
)


# --- the errors a refund request can meet (mapped to HTTP by treasury.errors) ---


class RefundNotAllowed(Forbidden):
    code = "refund_not_allowed"


class RefundWindowClosed(Forbidden):
    code = "refund_window_closed"


class ExceedsRefundable(TreasuryError):
    status_code = 422
    code = "exceeds_refundable"


class ChargeDisputed(Conflict):
    code = "charge_disputed"


class ChargeNotBookedYet(Conflict):
    """A dispute's charge cannot be booked yet: the event fails and is retried."""

    code = "charge_not_booked"


# --- small helpers ---


def _id_of(value: Any) -> str | None:
    """A Stripe reference, expanded (an object) or not (its id)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value) if value else None


def _lock(name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])


def refund_request_hash(
    *, charge_id: str, amount_cents: int | None, currency: str | None, reason: str, note: str
) -> str:
    """What makes two refund requests with one idempotency key the same request."""
    body = {
        "charge_id": charge_id,
        "amount_cents": "rest" if amount_cents is None else amount_cents,
        "currency": currency,
        "reason": reason,
        "note": note,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _charge_split(charge: StripeCharge) -> ChargeSplit:
    return ChargeSplit.from_allocation_json(charge.allocation)


def _refund_policy(charge: StripeCharge) -> dict[str, bool]:
    """The policy every refund of `charge` is booked by: the one its first refund took from
    settings, so that a settings change between two partial refunds cannot break the sum."""
    first = selectors.first_refund_of(charge=charge)
    if first is not None:
        return {
            "platform_refunds_fee": first.platform_refunds_fee,
            "platform_absorbs_stripe_fee": first.platform_absorbs_stripe_fee,
        }
    return {
        "platform_refunds_fee": settings.REFUNDS_PLATFORM_REFUNDS_FEE,
        "platform_absorbs_stripe_fee": settings.REFUNDS_PLATFORM_ABSORBS_STRIPE_FEE,
    }


# --- 1. a refund is asked for ---


def _validated_request(
    *,
    amount_cents: int | None,
    currency: str | None,
    reason: str,
    note: str,
    idempotency_key: str,
) -> tuple[str | None, str, str]:
    if amount_cents is not None and (
        isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0
    ):
        raise InvalidInput(
            "amount_cents must be a positive integer of minor units (or left out: all that is"
            " left)",
            fields={"amount_cents": ["positive integer"]},
        )
    normalized = normalize_currency(currency) if currency else None
    if reason not in RefundReason.values:
        choices = ", ".join(RefundReason.values)
        raise InvalidInput(f"reason must be one of {choices}", fields={"reason": [choices]})
    note = (note or "").strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise InvalidInput(
            f"note is at most {MAX_NOTE_LENGTH} characters", fields={"note": ["too long"]}
        )
    key = (idempotency_key or "").strip()
    if not key or len(key) > 255:
        raise InvalidInput(
            "an idempotency key is required (at most 255 characters)",
            fields={"Idempotency-Key": ["1 to 255 characters"]},
        )
    return normalized, note, key


def _check_buyer_may_refund(
    *, charge: StripeCharge, amount_cents: int | None, left_cents: int
) -> None:
    policy = settings.REFUNDS_BUYER_POLICY
    if policy == "none":
        raise RefundNotAllowed(
            "refunds are made by support: ask an admin",
            fields={"charge_id": ["buyers cannot refund themselves"]},
        )
    window = timedelta(days=settings.REFUNDS_BUYER_WINDOW_DAYS)
    if timezone.now() > charge.charged_at + window:
        raise RefundWindowClosed(
            f"charge {charge.stripe_charge_id} was paid more than"
            f" {settings.REFUNDS_BUYER_WINDOW_DAYS} days ago: only support can refund it now",
            fields={"charge_id": [f"refund window of {settings.REFUNDS_BUYER_WINDOW_DAYS} days"]},
        )
    if policy == "full" and amount_cents is not None and amount_cents != left_cents:
        raise RefundNotAllowed(
            f"only a full refund ({format_minor(left_cents, charge.currency)}) can be asked for",
            fields={"amount_cents": [f"must be {left_cents} or left out"]},
        )


@transaction.atomic
def request_refund(
    *,
    actor: User,
    charge_id: str,
    amount_cents: int | None,
    currency: str | None = None,
    reason: str = RefundReason.REQUESTED_BY_CUSTOMER,
    note: str = "",
    idempotency_key: str,
) -> Refund:
    """Refund `amount_cents` (None: all that is left) of a booked charge, sent to Stripe after
    commit. The buyer of the charge may, within the window and policy; an admin may refund
    any charge; for anyone else the charge does not exist (NotFound).

    The same idempotency key (per requester) with the same request returns the first
    refund (`was_replayed`); with another amount, charge or reason it is IdempotencyConflict.
    Nothing is written when a check fails.
    """
    currency, note, key = _validated_request(
        amount_cents=amount_cents,
        currency=currency,
        reason=reason,
        note=note,
        idempotency_key=idempotency_key,
    )
    body_hash = refund_request_hash(
        charge_id=charge_id, amount_cents=amount_cents, currency=currency, reason=reason, note=note
    )
    with system_context():
        charge = StripeCharge.objects.filter(stripe_charge_id=charge_id).first()
        if charge is None or not (actor.is_admin or charge.buyer_id == actor.pk):
            raise NotFound(f"charge {charge_id} not found", fields={"charge_id": ["not found"]})
        lock_stripe_object(charge_id)  # every refund and dispute decision about the charge
        existing = Refund.objects.filter(requested_by_id=actor.pk, idempotency_key=key).first()
        if existing is not None:
            if existing.request_hash != body_hash:
                raise IdempotencyConflict(
                    f"idempotency key {key!r} was already used for another refund request",
                    fields={"Idempotency-Key": ["reused with a different request"]},
                )
            existing.was_replayed = True  # type: ignore[attr-defined]
            if existing.status == RefundStatus.PENDING and not existing.stripe_refund_id:
                _nudge(existing, REFUND_REQUESTED)  # a retried request nudges it on
            return existing
        if currency is not None and currency != charge.currency:
            raise InvalidInput(
                f"charge {charge_id} is in {charge.currency}, not {currency}: a refund is in"
                " the charge's currency (nothing is converted)",
                fields={"currency": [f"must be {charge.currency}"]},
            )
        dispute = selectors.blocking_dispute_of(charge=charge)
        if dispute is not None:
            raise ChargeDisputed(
                f"charge {charge_id} is disputed ({dispute.stripe_dispute_id},"
                f" {dispute.status}): the bank decides what goes back to the buyer",
                fields={"charge_id": ["disputed"]},
            )
        left = charge.amount_cents - selectors.refunded_cents(charge=charge)
        if not actor.is_admin:
            _check_buyer_may_refund(charge=charge, amount_cents=amount_cents, left_cents=left)
        amount = left if amount_cents is None else amount_cents
        if left <= 0:
            raise ExceedsRefundable(
                f"charge {charge_id} is already refunded in full",
                fields={"amount_cents": ["nothing left to refund"]},
            )
        if amount > left:
            raise ExceedsRefundable(
                f"{format_minor(amount, charge.currency)} exceeds the"
                f" {format_minor(left, charge.currency)} left to refund of charge {charge_id}",
                fields={"amount_cents": [f"at most {left}"]},
            )
        refund = Refund.objects.create(
            charge=charge,
            buyer_id=charge.buyer_id,
            host_id=charge.host_id,
            amount_cents=amount,
            currency=charge.currency,
            reason=reason,
            note=note,
            requested_by=actor,
            idempotency_key=key,
            request_hash=body_hash,
            **_refund_policy(charge),
        )
        record_audit(
            actor=actor,
            action="refund.request",
            target=refund,
            before={"charge_id": charge_id, "refunded_cents": charge.amount_cents - left},
            after=snapshot(refund),
            details={"charge_id": charge_id, "left_before_cents": left},
        )
        _record_job_event(refund, REFUND_REQUESTED)
    refund.was_replayed = False  # type: ignore[attr-defined]
    return refund


def _subject(refund: Refund) -> str:
    return f"refund:{refund.pk}"


def _record_job_event(refund: Refund, event_type: str) -> None:
    """What the refund still owes (its Stripe call, a claw-back) as an outbox event, in the
    caller's transaction, so it happens even if this process dies right after the commit;
    tried at once after the commit."""
    event_id = record_event(
        type=event_type, subject=_subject(refund), payload={"refund_id": refund.pk}
    )
    deliver_after_commit(event_id=event_id)


def _nudge(refund: Refund, event_type: str) -> None:
    event_id = (
        Event.objects.filter(subject=_subject(refund), type=event_type)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    if event_id is not None:
        deliver_after_commit(event_id=event_id)


# --- 2. Stripe is asked ---


def send_refund_to_stripe(*, refund_id: int) -> Refund:
    """Create the refund at Stripe unless it was (no lock is held across the call; the
    idempotency key and our id in its metadata make a rerun find the same refund)."""
    with system_context():
        refund = Refund.objects.get(pk=refund_id)
    if refund.stripe_refund_id or refund.status != RefundStatus.PENDING:
        return refund
    try:
        remote = _find_or_create_stripe_refund(refund)
    except DEFINITIVE_STRIPE_ERRORS as exc:
        code = getattr(exc, "code", None) or "refund_failed"
        return fail_refund(
            refund_id=refund.pk,
            reason=f"Stripe refused the refund: {exc.user_message or exc} ({code})",
        )
    except stripe.StripeError:
        logger.warning("refund %s: Stripe did not answer; resumed later", refund.pk)
        return refund
    return record_stripe_refund(refund=remote)


def _find_or_create_stripe_refund(refund: Refund) -> dict[str, Any]:
    client = stripe_client()
    # Stripe forgets idempotency keys after a day: look for the refund first.
    listed = client.v1.refunds.list(params={"charge": refund.charge_id, "limit": 100})
    for remote in listed.data:
        if (remote.get("metadata") or {}).get("treasury_refund_id") == str(refund.pk):
            return as_dict(remote)
    created = client.v1.refunds.create(
        params={
            "charge": refund.charge_id,
            "amount": refund.amount_cents,
            "reason": refund.reason,
            "metadata": {
                "treasury_refund_id": str(refund.pk),
                "requested_by": str(refund.requested_by_id or ""),
            },
        },
        options={"idempotency_key": f"treasury-refund-{refund.pk}"},
    )
    return as_dict(created)


@transaction.atomic
def fail_refund(*, refund_id: int, reason: str) -> Refund:
    """Stripe refused the refund (or it failed later): it is failed, and if it had been
    booked, booked back. Idempotent."""
    with system_context():
        refund = Refund.objects.get(pk=refund_id)
        lock_stripe_object(refund.charge_id)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status == RefundStatus.FAILED:
            return refund
        before = snapshot(refund)
        _mark_failed(refund, reason=reason)
        refund.save()
        record_audit(
            actor=None,
            action="refund.failed",
            target=refund,
            before=before,
            after=snapshot(refund),
            details={"reason": reason},
        )
    return refund


# --- 3. Stripe's answer and events book it ---


@transaction.atomic
def record_stripe_refund(*, refund: Mapping[str, Any]) -> Refund:
    """Bring our refund up to Stripe's `refund` object (its answer, or an event's copy):
    adopt it if it was made at Stripe directly, book it once Stripe has taken the money,
    settle or fail it. Statuses only move forward, so stale copies change nothing."""
    stripe_refund_id = str(refund.get("id") or "")
    charge_id = _id_of(refund.get("charge"))
    if not stripe_refund_id or not charge_id:
        raise InvalidInput(f"refund {stripe_refund_id or '?'} names no charge")
    charge = ensure_charge_posted(charge_id=charge_id)  # under the charge's lock from here
    with system_context():
        lock_stripe_object(charge_id)
        row = _refund_row_for(refund, charge)
        before = snapshot(row)
        if int(refund.get("amount") or 0) != row.amount_cents:
            raise Conflict(
                f"refund {stripe_refund_id} is for {refund.get('amount')} at Stripe, but refund"
                f" {row.pk} asked for {row.amount_cents}"
            )
        stripe_status = str(refund.get("status") or "pending")
        status = STRIPE_REFUND_STATUS.get(stripe_status, RefundStatus.PENDING)
        refused_here = not row.stripe_refund_id and row.status == RefundStatus.FAILED
        if refused_here and status != RefundStatus.FAILED:
            # We failed it on Stripe's refusal, yet Stripe has it: never guess with money;
            # the event fails loudly (and is kept) until someone looks.
            raise Conflict(
                f"refund {row.pk} failed here ({row.failure_reason}) but Stripe made it as"
                f" {stripe_refund_id} ({stripe_status})"
            )
        if not row.stripe_refund_id:
            row.stripe_refund_id = stripe_refund_id
        booked_now = False
        if status == RefundStatus.FAILED:
            if row.status != RefundStatus.FAILED:
                reason = str(refund.get("failure_reason") or stripe_status)
                _mark_failed(row, reason=f"Stripe: {reason}", charge=charge)
        elif row.status != RefundStatus.FAILED:
            if row.ledger_transaction_id is None:
                _book(row, charge)
                booked_now = True
            if status == RefundStatus.SUCCEEDED and row.status == RefundStatus.PENDING:
                row.status = RefundStatus.SUCCEEDED
                row.settled_at = timezone.now()
        row.save()
        if row.status != before["status"] or booked_now:
            record_audit(
                actor=None,
                action=f"refund.{row.status}",
                target=row,
                before=before,
                after=snapshot(row),
                details={"stripe_refund_id": stripe_refund_id, "stripe_status": stripe_status},
            )
        if booked_now and settings.REFUNDS_REVERSE_TRANSFERS:
            _record_job_event(row, REFUND_BOOKED)
    return row


def sync_stripe_refund(*, stripe_refund_id: str) -> Refund:
    """A refund event says only that the refund changed: read it back from Stripe and bring
    ours up to it (events come in any order, and their copy may be stale)."""
    remote = stripe_client().v1.refunds.retrieve(stripe_refund_id)
    return record_stripe_refund(refund=as_dict(remote))


def _refund_row_for(refund: Mapping[str, Any], charge: StripeCharge) -> Refund:
    """Ours by Stripe id; else the request whose answer we never recorded (our id is in the
    metadata); else a refund made at Stripe directly, adopted (requested by nobody here)."""
    stripe_refund_id = str(refund["id"])
    row = Refund.objects.select_for_update().filter(stripe_refund_id=stripe_refund_id).first()
    if row is not None:
        return row
    ours = str((refund.get("metadata") or {}).get("treasury_refund_id") or "")
    if ours.isdigit():
        row = (
            Refund.objects.select_for_update()
            .filter(pk=int(ours), charge_id=charge.stripe_charge_id, stripe_refund_id__isnull=True)
            .first()
        )
        if row is not None:
            return row
    currency = normalize_currency(str(refund.get("currency") or ""))
    if currency != charge.currency:
        raise InvalidInput(
            f"refund {stripe_refund_id} is in {currency}, its charge in {charge.currency}"
        )
    reason = str(refund.get("reason") or "")
    row = Refund.objects.create(
        stripe_refund_id=stripe_refund_id,
        charge=charge,
        buyer_id=charge.buyer_id,
        host_id=charge.host_id,
        amount_cents=int(refund.get("amount") or 0),
        currency=currency,
        reason=reason if reason in RefundReason.values else RefundReason.REQUESTED_BY_CUSTOMER,
        note="made at Stripe directly",
        requested_by=None,
        idempotency_key=f"stripe:{stripe_refund_id}",
        request_hash="",
        **_refund_policy(charge),
    )
    record_audit(actor=None, action="refund.adopt", target=row, after=snapshot(row))
    return row


def _step(
    row: Refund, charge: StripeCharge, *, before_cents: int, after_cents: int
) -> RefundShares:
    policy = {
        "platform_refunds_fee": row.platform_refunds_fee,
        "platform_absorbs_stripe_fee": row.platform_absorbs_stripe_fee,
    }
    split = _charge_split(charge)
    after = refunded_shares(charge=split, refunded_cents=after_cents, **policy)
    before = refunded_shares(charge=split, refunded_cents=before_cents, **policy)
    return after.minus(before)


def refund_lines(*, shares: RefundShares, currency: str, back: bool = False) -> list[EntryLine]:
    """A refund's posting (see the module's docstring); `back` mirrors it (a failed refund
    booked back). Parts of 0 are left out (the ledger refuses zero amounts)."""
    take, give = (credit, debit) if back else (debit, credit)
    lines = [give(platform_code("stripe_balance", currency), shares.total_cents, currency)]
    if shares.platform_fee_cents:
        lines.append(
            take(platform_code("fee_revenue", currency), shares.platform_fee_cents, currency)
        )
    for recipient_id, cents in shares.recipients.items():
        if cents:
            lines.append(take(user_code(recipient_id, "payable", currency), cents, currency))
    returned = sum(shares.stripe_fee_returned.values())
    if returned:
        lines.append(take(platform_code("processing_fees", currency), returned, currency))
        for recipient_id, cents in shares.stripe_fee_returned.items():
            if cents:
                lines.append(give(user_code(recipient_id, "payable", currency), cents, currency))
    return lines


def _book(row: Refund, charge: StripeCharge) -> None:
    """Post `refund:<re_id>`: the next `amount` cents of the charge's cumulative reversal."""
    before_cents = selectors.booked_refunded_cents(charge=charge, excluding=row)
    after_cents = before_cents + row.amount_cents
    shares = _step(row, charge, before_cents=before_cents, after_cents=after_cents)
    posted = post_transaction(
        idempotency_key=row.ledger_key,
        entries=refund_lines(shares=shares, currency=row.currency),
        event_source=REFUND_SOURCE,
        reference_id=row.stripe_refund_id,
        metadata={
            "refund_id": row.pk,
            "charge_id": charge.stripe_charge_id,
            "host_id": str(charge.host_id),
            "buyer_id": str(charge.buyer_id) if charge.buyer_id else None,
            "refunded_before_cents": before_cents,
            "refunded_after_cents": after_cents,
            **{
                key: getattr(row, key)
                for key in ("platform_refunds_fee", "platform_absorbs_stripe_fee")
            },
        },
    )
    row.ledger_transaction = posted
    row.split = shares.as_json()


def _mark_failed(row: Refund, *, reason: str, charge: StripeCharge | None = None) -> None:
    """Failed; a booked refund is booked back by the cumulative step down (the invariant is
    that the charge's refund postings always sum to the split of what stays refunded)."""
    if row.ledger_transaction_id is not None and row.failure_transaction_id is None:
        charge = charge or StripeCharge.objects.get(stripe_charge_id=row.charge_id)
        after_cents = selectors.booked_refunded_cents(charge=charge, excluding=row)
        shares = _step(
            row, charge, before_cents=after_cents, after_cents=after_cents + row.amount_cents
        )
        row.failure_transaction = post_transaction(
            idempotency_key=f"{row.ledger_key}:failed",
            entries=refund_lines(shares=shares, currency=row.currency, back=True),
            event_source=REFUND_SOURCE,
            reference_id=row.stripe_refund_id,
            metadata={
                "refund_id": row.pk,
                "charge_id": row.charge_id,
                "host_id": str(row.host_id),
                "failed": True,
                "refunded_before_cents": after_cents + row.amount_cents,
                "refunded_after_cents": after_cents,
            },
        )
    row.status = RefundStatus.FAILED
    row.failure_reason = reason
    row.settled_at = timezone.now()


# --- 4. recipients already paid out: pull it back from their transfers, or it is a debt ---


def recover_refund_shortfalls(*, refund_id: int) -> list[RefundTransferReversal]:
    """For each recipient the refund took from: if their payable is now below zero (they
    were paid out), reverse up to their share of the refund from their paid transfers,
    newest first. Each reversal is planned in one transaction (so two refunds never pull
    the same debt twice), asked of Stripe with no lock held, then recorded. A rerun (the
    job's retry) plans nothing twice and asks again for what is still unanswered."""
    _plan_transfer_reversals(refund_id=refund_id)
    with system_context():
        owed = list(
            RefundTransferReversal.objects.filter(
                refund_id=refund_id, status=ReversalStatus.PENDING
            )
            .order_by("id")
            .values_list("pk", flat=True)
        )
    return [execute_transfer_reversal(reversal_id=pk) for pk in owed]


@transaction.atomic
def _plan_transfer_reversals(*, refund_id: int) -> list[RefundTransferReversal]:
    planned: list[RefundTransferReversal] = []
    with system_context():
        refund = Refund.objects.get(pk=refund_id)
        if refund.ledger_transaction_id is None or refund.failure_transaction_id is not None:
            return planned
        currency = refund.currency
        for user_id, share in sorted((refund.split.get("recipients") or {}).items()):
            if share <= 0:
                continue
            _lock(f"refunds:recover:{user_id}")
            payable = account_balance(code=user_code(user_id, "payable", currency))
            shortfall = -payable - selectors.pending_reversal_cents(
                user_id=user_id, currency=currency
            )
            wanted = min(
                share - selectors.attempted_reversal_cents(refund=refund, user_id=user_id),
                shortfall,
            )
            for payout, left in selectors.reversible_transfers(user_id=user_id, currency=currency):
                if wanted <= 0:
                    break
                amount = min(wanted, left)
                planned.append(
                    RefundTransferReversal.objects.create(
                        refund=refund,
                        user_id=user_id,
                        payout=payout,
                        stripe_transfer_id=payout.stripe_transfer_id,
                        amount_cents=amount,
                        currency=currency,
                    )
                )
                wanted -= amount
    return planned


def execute_transfer_reversal(*, reversal_id: int) -> RefundTransferReversal:
    """Ask Stripe for one planned reversal (same idempotency key on every retry) and record
    the answer. Refused: failed, and the recipient's negative payable stays a debt."""
    with system_context():
        row = RefundTransferReversal.objects.get(pk=reversal_id)
    if row.status != ReversalStatus.PENDING:
        return row
    client = stripe_client()
    try:
        reversal = client.v1.transfers.reversals.create(
            row.stripe_transfer_id,
            params={
                "amount": row.amount_cents,
                "metadata": {"treasury_refund_id": str(row.refund_id), "reason": "refund"},
            },
            options={"idempotency_key": row.idempotency_key},
        )
        transfer = fetch_transfer(row.stripe_transfer_id)
    except DEFINITIVE_STRIPE_ERRORS as exc:
        return _record_reversal_refused(
            reversal_id=row.pk,
            code=getattr(exc, "code", None) or "reversal_failed",
            message=str(exc.user_message or exc),
        )
    except stripe.StripeError:
        logger.warning("refund reversal %s: Stripe did not answer; resumed later", row.pk)
        return row
    return _record_reversal_done(
        reversal_id=row.pk, stripe_reversal_id=reversal.id, transfer=transfer
    )


@transaction.atomic
def _record_reversal_done(
    *, reversal_id: int, stripe_reversal_id: str, transfer: Mapping[str, Any]
) -> RefundTransferReversal:
    with system_context():
        row = RefundTransferReversal.objects.select_for_update().get(pk=reversal_id)
        if row.status != ReversalStatus.PENDING:
            return row
        before = snapshot(row)
        # The payout books the money back: Stripe balance -> the recipient's payable, one
        # posting per Stripe reversal (the same call its transfer.reversed event makes).
        record_transfer_reversals(payout_id=row.payout_id, transfer=transfer)
        row.status = ReversalStatus.REVERSED
        row.stripe_reversal_id = stripe_reversal_id
        row.save()
        record_audit(
            actor=None,
            action="refund.transfer_reversed",
            target=row,
            before=before,
            after=snapshot(row),
            details={"refund_id": row.refund_id, "payout_id": row.payout_id},
        )
    return row


@transaction.atomic
def _record_reversal_refused(
    *, reversal_id: int, code: str, message: str
) -> RefundTransferReversal:
    with system_context():
        row = RefundTransferReversal.objects.select_for_update().get(pk=reversal_id)
        if row.status != ReversalStatus.PENDING:
            return row
        before = snapshot(row)
        row.status = ReversalStatus.FAILED
        row.failure_code = code[:100]
        row.failure_message = message
        row.save()
        refund = Refund.objects.select_for_update().get(pk=row.refund_id)
        amount = format_minor(row.amount_cents, row.currency)
        line = (
            f"{amount} of user {row.user_id}'s share could not be pulled back from transfer"
            f" {row.stripe_transfer_id} ({code}): it stays a debt on their payable, recovered"
            " from their next earnings."
        )
        refund.recovery_note = f"{refund.recovery_note}\n{line}".strip()
        refund.save(update_fields=["recovery_note", "updated_at"])
        record_audit(
            actor=None,
            action="refund.transfer_reversal_failed",
            target=row,
            before=before,
            after=snapshot(row),
            details={"refund_id": row.refund_id, "code": code, "message": message},
        )
    return row


# --- jobs ---


def resume_refunds(*, older_than: timedelta = timedelta(minutes=1), limit: int = 200) -> int:
    """Send refunds Stripe never answered and retry pending transfer reversals; returns how
    many changed state. Each is its own transaction: one failure does not hold the rest."""
    cutoff = timezone.now() - older_than
    with system_context():
        refunds = list(
            selectors.refunds_to_resume()
            .filter(created_at__lt=cutoff)
            .values_list("pk", flat=True)[:limit]
        )
        reversals = list(
            selectors.reversals_to_resume()
            .filter(created_at__lt=cutoff)
            .values_list("pk", flat=True)[:limit]
        )
    changed = 0
    for pk in refunds:
        changed += send_refund_to_stripe(refund_id=pk).status != RefundStatus.PENDING
    for pk in reversals:
        changed += execute_transfer_reversal(reversal_id=pk).status != ReversalStatus.PENDING
    return changed


# --- disputes ---


def _loss_bearer(charge: StripeCharge) -> Bearer:
    """The split rule's dispute_loss_bearer (the charge's version), else the platform's
    default terms'."""
    if charge.split_rule_id is not None:
        return rule_version(rule_id=charge.split_rule_id).terms.dispute_loss_bearer
    return platform_default_terms(owner=charge.host).dispute_loss_bearer


def _withdrawal(remote: Mapping[str, Any]) -> tuple[int, int]:
    """(disputed funds, dispute fee) Stripe took, from the dispute's balance transactions."""
    taken = [bt for bt in remote.get("balance_transactions") or [] if int(bt.get("amount", 0)) < 0]
    if not taken:
        return int(remote.get("amount") or 0), 0
    return -sum(int(bt["amount"]) for bt in taken), sum(int(bt.get("fee") or 0) for bt in taken)


def _reinstated(remote: Mapping[str, Any], dispute: Dispute) -> int:
    """What a won dispute gave back to Stripe's balance (net of any fee on it)."""
    back = [bt for bt in remote.get("balance_transactions") or [] if int(bt.get("amount", 0)) > 0]
    if not back:
        return dispute.withdrawn_cents
    return sum(int(bt.get("net", bt["amount"])) for bt in back)


@transaction.atomic
def sync_dispute(*, stripe_dispute_id: str) -> Dispute:
    """Bring the dispute up to Stripe's copy (read back, whatever the event said) and book
    what it has done: opened, then won or lost. Idempotent; never moves a dispute back."""
    remote = as_dict(stripe_client().v1.disputes.retrieve(stripe_dispute_id))
    charge_id = _id_of(remote.get("charge"))
    if not charge_id:
        raise InvalidInput(f"dispute {stripe_dispute_id} names no charge")
    try:
        charge = ensure_charge_posted(charge_id=charge_id)
    except TreasuryError as exc:
        raise ChargeNotBookedYet(
            f"dispute {stripe_dispute_id}: charge {charge_id} cannot be booked yet"
            f" ({exc.message}); the event is kept and retried"
        ) from exc
    status = str(remote.get("status") or "")
    if status not in DisputeStatus.values:
        raise InvalidInput(f"dispute {stripe_dispute_id} has an unknown status {status!r}")
    with system_context():
        lock_stripe_object(charge_id)
        dispute = (
            Dispute.objects.select_for_update().filter(stripe_dispute_id=stripe_dispute_id).first()
        )
        created = dispute is None
        if dispute is None:
            dispute = _new_dispute(remote, charge, status=status)
        before = snapshot(dispute)
        if (
            DISPUTE_PROGRESS[DisputeStatus(status)]
            >= DISPUTE_PROGRESS[DisputeStatus(dispute.status)]
        ):
            dispute.status = status
        dispute.reason = str(remote.get("reason") or dispute.reason)[:64]
        dispute.evidence_due_by = _evidence_due_by(remote) or dispute.evidence_due_by
        if dispute.status not in INQUIRY_STATUSES and dispute.opened_transaction_id is None:
            _open(dispute, charge, remote)
        if dispute.closed_at is None and dispute.status in (DisputeStatus.WON, DisputeStatus.LOST):
            _close(dispute, charge, remote)
        elif dispute.closed_at is None and dispute.status in (
            DisputeStatus.WARNING_CLOSED,
            DisputeStatus.PREVENTED,
        ):
            dispute.closed_at = timezone.now()
            dispute.outcome = f"{dispute.status}: no money moved"
        dispute.save()
        if created or dispute.status != before["status"]:
            record_audit(
                actor=None,
                action=f"dispute.{dispute.status}",
                target=dispute,
                before=None if created else before,
                after=snapshot(dispute),
                details={"stripe_dispute_id": stripe_dispute_id, "charge_id": charge_id},
            )
    return dispute


def _evidence_due_by(remote: Mapping[str, Any]) -> datetime | None:
    due = (remote.get("evidence_details") or {}).get("due_by")
    return datetime.fromtimestamp(int(due), tz=UTC) if due else None


def _new_dispute(remote: Mapping[str, Any], charge: StripeCharge, *, status: str) -> Dispute:
    currency = normalize_currency(str(remote.get("currency") or ""))
    if currency != charge.currency:
        raise InvalidInput(
            f"dispute {remote['id']} is in {currency}, its charge in {charge.currency}"
        )
    created = remote.get("created")
    return Dispute.objects.create(
        stripe_dispute_id=str(remote["id"]),
        charge=charge,
        host_id=charge.host_id,
        status=status,
        amount_cents=int(remote.get("amount") or 0),
        currency=currency,
        reason=str(remote.get("reason") or "")[:64],
        evidence_due_by=_evidence_due_by(remote),
        loss_bearer=_loss_bearer(charge),
        fee_bearer=settings.DISPUTES_FEE_BEARER,
        stripe_created_at=datetime.fromtimestamp(int(created), tz=UTC) if created else None,
    )


def _open(dispute: Dispute, charge: StripeCharge, remote: Mapping[str, Any]) -> None:
    withdrawn, fee = _withdrawal(remote)
    currency = dispute.currency
    shares = dispute_shares(
        charge=_charge_split(charge),
        refunded_cents=selectors.booked_refunded_cents(charge=charge),
        disputed_cents=withdrawn,
        fee_cents=fee,
        fee_bearer=dispute.fee_bearer,
    )
    recipients_fee = sum(shares.fee_recipients.values())
    lines = [credit(platform_code("stripe_balance", currency), withdrawn + fee, currency)]
    if withdrawn + fee - recipients_fee:
        losses = platform_code("dispute_losses", currency)
        lines.append(debit(losses, withdrawn + fee - recipients_fee, currency))
    for recipient_id, cents in shares.recipients.items():
        if cents:
            lines.append(debit(user_code(recipient_id, "payable", currency), cents, currency))
            lines.append(credit(user_code(recipient_id, "held", currency), cents, currency))
    for recipient_id, cents in shares.fee_recipients.items():
        if cents:
            lines.append(debit(user_code(recipient_id, "payable", currency), cents, currency))
    dispute.withdrawn_cents = withdrawn
    dispute.fee_cents = fee
    dispute.holds = shares.as_json()
    dispute.fee_shares = dict(shares.fee_recipients)
    if withdrawn + fee == 0:
        return  # nothing left Stripe: nothing to book
    dispute.opened_transaction = post_transaction(
        idempotency_key=dispute.ledger_key("opened"),
        entries=lines,
        event_source=DISPUTE_SOURCE,
        reference_id=dispute.stripe_dispute_id,
        metadata=_dispute_metadata(dispute, charge),
    )


def _dispute_metadata(dispute: Dispute, charge: StripeCharge) -> dict[str, Any]:
    return {
        "dispute_id": dispute.stripe_dispute_id,
        "charge_id": charge.stripe_charge_id,
        "host_id": str(charge.host_id),
        "withdrawn_cents": dispute.withdrawn_cents,
        "fee_cents": dispute.fee_cents,
        "loss_bearer": dispute.loss_bearer,
        "fee_bearer": dispute.fee_bearer,
    }


def _close(dispute: Dispute, charge: StripeCharge, remote: Mapping[str, Any]) -> None:
    currency = dispute.currency
    holds = {rid: int(c) for rid, c in (dispute.holds.get("recipients") or {}).items() if c}
    held_total = sum(holds.values())
    lines: list[EntryLine] = []
    for recipient_id, cents in holds.items():
        lines.append(debit(user_code(recipient_id, "held", currency), cents, currency))
    losses = platform_code("dispute_losses", currency)
    withdrawn = format_minor(dispute.withdrawn_cents, currency)
    fee = format_minor(dispute.fee_cents, currency)
    fee_by = "the recipients" if dispute.fee_bearer == Bearer.RECIPIENTS else "the platform"
    if dispute.status == DisputeStatus.WON:
        returned = _reinstated(remote, dispute) if dispute.opened_transaction_id else 0
        if returned:
            lines.append(debit(platform_code("stripe_balance", currency), returned, currency))
            lines.append(credit(losses, returned, currency))
        lines += [
            credit(user_code(rid, "payable", currency), cents, currency)
            for rid, cents in holds.items()
        ]
        dispute.outcome = (
            f"won: {format_minor(returned, currency)} returned, holds released; the {fee}"
            f" dispute fee was borne by {fee_by}"
        )
    elif dispute.loss_bearer == Bearer.RECIPIENTS:
        if held_total:
            lines.append(credit(losses, held_total, currency))
        dispute.outcome = (
            f"lost: {withdrawn} borne by the recipients pro rata"
            f" ({format_minor(held_total, currency)}) and the platform (its fee part); the"
            f" {fee} dispute fee by {fee_by}"
        )
    else:
        lines += [
            credit(user_code(rid, "payable", currency), cents, currency)
            for rid, cents in holds.items()
        ]
        dispute.outcome = (
            f"lost: {withdrawn} borne by the platform, holds released; the {fee} dispute fee by"
            f" {fee_by}"
        )
    dispute.closed_at = timezone.now()
    if lines:
        dispute.closed_transaction = post_transaction(
            idempotency_key=dispute.ledger_key(str(dispute.status)),
            entries=lines,
            event_source=DISPUTE_SOURCE,
            reference_id=dispute.stripe_dispute_id,
            metadata={**_dispute_metadata(dispute, charge), "outcome": str(dispute.status)},
        )


@transaction.atomic
def add_dispute_note(*, actor: User, stripe_dispute_id: str, body: str) -> DisputeNote:
    """A resolution note, by an admin or the dispute's host (for anyone else the dispute
    does not exist); audited."""
    body = (body or "").strip()
    if not body:
        raise InvalidInput("a note needs some text", fields={"note": ["required"]})
    if len(body) > MAX_NOTE_LENGTH:
        raise InvalidInput(
            f"a note is at most {MAX_NOTE_LENGTH} characters", fields={"note": ["too long"]}
        )
    dispute = selectors.dispute_for(user=actor, stripe_dispute_id=stripe_dispute_id)
    with system_context():
        notes_before = DisputeNote.objects.filter(dispute=dispute).count()
        note = DisputeNote.objects.create(dispute=dispute, author=actor, body=body)
        record_audit(
            actor=actor,
            action="dispute.note",
            target=dispute,
            before={"status": dispute.status, "note_count": notes_before},
            after=snapshot(note),
            details={"note_id": note.pk, "status": dispute.status},
        )
    return note
