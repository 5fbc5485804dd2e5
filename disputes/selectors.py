"""Every read of refunds and disputes.

Row-level security decides what the caller's context sees (a buyer the refunds of their
payments, a host those of their sales and their disputes; admins and the system all); the
filters say the same in Python, so a selector answers the question it is asked under any
context.
"""

from __future__ import annotations

from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from disputes.models import (
    CLOSED_DISPUTE_STATUSES,
    OPEN_DISPUTE_STATUSES,
    Dispute,
    DisputeNote,
    DisputeStatus,
    Refund,
    RefundStatus,
    RefundTransferReversal,
    ReversalStatus,
)
from payouts.models import Payout, PayoutStatus
from treasury.errors import NotFound
from treasury.models import User
from treasury.stripe.models import StripeCharge

MAX_BIGINT = 2**63 - 1
# A dispute in these states stops refunds (Stripe refuses them too): the money is already
# gone back to the buyer, or may be.
BLOCKING_DISPUTE_STATUSES = (*OPEN_DISPUTE_STATUSES, DisputeStatus.LOST)


# --- refunds ---


def refunds_visible_to(
    *, user: User, status: str | None = None, charge_id: str | None = None
) -> QuerySet[Refund]:
    """Refunds of the user's payments and sales, and those they asked for (every refund,
    for an admin), newest first."""
    rows = Refund.objects.all()
    if not user.is_admin:
        rows = rows.filter(Q(buyer_id=user.pk) | Q(host_id=user.pk) | Q(requested_by_id=user.pk))
    if status:
        rows = rows.filter(status=status)
    if charge_id:
        rows = rows.filter(charge_id=charge_id)
    return rows.order_by("-created_at", "-id")


def refund_for(*, user: User, refund_id: int) -> Refund:
    """One refund the user may see; another user's is NotFound (404), never 403."""
    refund = None
    if 0 < refund_id <= MAX_BIGINT:
        refund = refunds_visible_to(user=user).filter(pk=refund_id).first()
    if refund is None:
        raise NotFound(f"refund {refund_id} not found")
    return refund


def refunded_cents(*, charge: StripeCharge) -> int:
    """What the charge's refunds take, failed ones left out: what is no longer refundable."""
    total = (
        Refund.objects.filter(charge_id=charge.stripe_charge_id)
        .exclude(status=RefundStatus.FAILED)
        .aggregate(total=Sum("amount_cents"))["total"]
    )
    return total or 0


def with_refunded_cents(charges: QuerySet[StripeCharge]) -> QuerySet[StripeCharge]:
    """The charges, each annotated with `refunded_cents` (failed refunds left out)."""
    refunded = (
        Refund.objects.filter(charge_id=OuterRef("stripe_charge_id"))
        .exclude(status=RefundStatus.FAILED)
        .values("charge_id")
        .annotate(total=Sum("amount_cents"))
        .values("total")
    )
    return charges.annotate(refunded_cents=Coalesce(Subquery(refunded), 0))


def booked_refunded_cents(*, charge: StripeCharge, excluding: Refund | None = None) -> int:
    """What the charge's refunds have taken in the books (booked, not booked back): the `T`
    of the cumulative split (disputes.shares)."""
    rows = Refund.objects.filter(
        charge_id=charge.stripe_charge_id,
        ledger_transaction__isnull=False,
        failure_transaction__isnull=True,
    )
    if excluding is not None:
        rows = rows.exclude(pk=excluding.pk)
    return rows.aggregate(total=Sum("amount_cents"))["total"] or 0


def first_refund_of(*, charge: StripeCharge) -> Refund | None:
    return Refund.objects.filter(charge_id=charge.stripe_charge_id).order_by("id").first()


def blocking_dispute_of(*, charge: StripeCharge) -> Dispute | None:
    """An open or lost dispute on the charge (no refund may be made then)."""
    return (
        Dispute.objects.filter(
            charge_id=charge.stripe_charge_id, status__in=BLOCKING_DISPUTE_STATUSES
        )
        .order_by("-id")
        .first()
    )


def reversals_of(*, refund: Refund) -> QuerySet[RefundTransferReversal]:
    return RefundTransferReversal.objects.filter(refund_id=refund.pk).order_by("id")


def attempted_reversal_cents(*, refund: Refund, user_id: str) -> int:
    """What was reversed or is being reversed for `refund` from `user_id`'s transfers."""
    total = (
        RefundTransferReversal.objects.filter(refund_id=refund.pk, user_id=user_id)
        .exclude(status=ReversalStatus.FAILED)
        .aggregate(total=Sum("amount_cents"))["total"]
    )
    return total or 0


def pending_reversal_cents(*, user_id: str, currency: str) -> int:
    """Asked of Stripe and not answered yet, for any refund: not yet back in payable."""
    total = RefundTransferReversal.objects.filter(
        user_id=user_id, currency=currency, status=ReversalStatus.PENDING
    ).aggregate(total=Sum("amount_cents"))["total"]
    return total or 0


def reversible_transfers(*, user_id: str, currency: str) -> list[tuple[Payout, int]]:
    """The user's paid payouts whose transfer still has money on the connected account, with
    how much of it may be reversed (net - reversed - reversals pending), newest first."""
    paid = Payout.objects.filter(
        user_id=user_id,
        currency=currency,
        status=PayoutStatus.PAID,
        stripe_transfer_id__isnull=False,
    ).order_by("-completed_at", "-id")
    found = []
    for payout in paid:
        pending = (
            RefundTransferReversal.objects.filter(
                payout_id=payout.pk, status=ReversalStatus.PENDING
            ).aggregate(total=Sum("amount_cents"))["total"]
            or 0
        )
        left = payout.net_cents - payout.reversed_cents - pending
        if left > 0:
            found.append((payout, left))
    return found


def refunds_to_resume() -> QuerySet[Refund]:
    """Refunds committed here but not answered by Stripe (a crash, Stripe unreachable)."""
    return Refund.objects.filter(
        status=RefundStatus.PENDING, stripe_refund_id__isnull=True
    ).order_by("created_at", "id")


def reversals_to_resume() -> QuerySet[RefundTransferReversal]:
    return RefundTransferReversal.objects.filter(status=ReversalStatus.PENDING).order_by(
        "created_at", "id"
    )


# --- disputes ---


def disputes_visible_to(*, user: User, status: str | None = None) -> QuerySet[Dispute]:
    """Disputes of the user's sales (every dispute, for an admin), newest first."""
    rows = Dispute.objects.all()
    if not user.is_admin:
        rows = rows.filter(host_id=user.pk)
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("-created_at", "-id")


def open_disputes() -> QuerySet[Dispute]:
    """Disputes not decided yet, the nearest evidence deadline first (admins; the caller
    checks)."""
    return (
        Dispute.objects.filter(status__in=OPEN_DISPUTE_STATUSES)
        .prefetch_related("notes")
        .order_by("evidence_due_by", "created_at", "id")
    )


def dispute_for(*, user: User, stripe_dispute_id: str) -> Dispute:
    """One dispute the user may see; another's is NotFound (404)."""
    dispute = disputes_visible_to(user=user).filter(stripe_dispute_id=stripe_dispute_id).first()
    if dispute is None:
        raise NotFound(f"dispute {stripe_dispute_id} not found")
    return dispute


def notes_of(*, dispute: Dispute) -> QuerySet[DisputeNote]:
    return DisputeNote.objects.filter(dispute_id=dispute.pk).order_by("created_at", "id")


def is_closed(status: str) -> bool:
    return status in CLOSED_DISPUTE_STATUSES
