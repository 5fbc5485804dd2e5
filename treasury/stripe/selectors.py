"""Reads of the Stripe tables. Row-level security decides what the caller's context sees;
the filters below say the same in Python, so a selector answers the question it is asked
even under a wider context."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from treasury.errors import NotFound
from treasury.models import User
from treasury.stripe.models import EventStatus, StripeAccount, StripeCharge, StripeEventProcessing


def connected_account_of(*, user: User) -> StripeAccount:
    """The user's connected account; NotFound (404) when they have none."""
    account = StripeAccount.objects.filter(user_id=user.pk).first()
    if account is None:
        raise NotFound("no connected Stripe account: start onboarding first")
    return account


def charges_visible_to(*, user: User) -> QuerySet[StripeCharge]:
    """Charges the user paid or sold (every charge, for an admin), newest first."""
    # No join to the ledger: a buyer may not read the posting (it holds no entry of theirs),
    # and row-level security would drop the charge from an inner join.
    charges = StripeCharge.objects.all()
    if not user.is_admin:
        charges = charges.filter(Q(buyer_id=user.pk) | Q(host_id=user.pk))
    return charges.order_by("-created_at", "-id")


def charge_for(*, user: User, stripe_charge_id: str) -> StripeCharge:
    """One charge the user may see; another user's is NotFound (404), never 403."""
    charge = charges_visible_to(user=user).filter(stripe_charge_id=stripe_charge_id).first()
    if charge is None:
        raise NotFound(f"charge {stripe_charge_id} not found")
    return charge


def events_needing_attention() -> QuerySet[StripeEventProcessing]:
    """Events that failed and have not been processed since, oldest first."""
    return StripeEventProcessing.objects.filter(status=EventStatus.FAILED).order_by("updated_at")
