"""Every read of payouts and of the money a recipient may be paid.

Row-level security decides what the caller's context sees (a recipient their own ledger
accounts, entries and payouts; admins and the system everything); the filters say the
same in Python, so a selector answers the question it is asked under any context.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from ledger.chart import platform_code, user_code
from ledger.models import LedgerEntry, Side
from ledger.selectors import account_balance, balance_at, balances
from payouts.models import UNSETTLED_STATUSES, Payout, PayoutMethod, PayoutStatus
from treasury.errors import NotFound
from treasury.models import User

# Earnings wait PAYOUTS_AVAILABILITY_DELAY; other credits to payable (a released payout, an
# admin's correction) are available at once.
DELAYED_SOURCE = "stripe_charge"
MAX_BIGINT = 2**63 - 1


@dataclass(frozen=True)
class PayoutBalance:
    """A recipient's money in one currency, in minor units.

    payable: the ledger balance (negative is a debt, recovered from later earnings);
    maturing: what charges booked within the availability delay added, net of their own
    Stripe fees; available: payable - maturing, never below 0; in_flight: what payouts not
    settled yet (held ones included) took from payable, now in payout_clearing.
    """

    currency: str
    payable_cents: int
    maturing_cents: int
    available_cents: int
    in_flight_cents: int

    @property
    def debt_cents(self) -> int:
        return max(0, -self.payable_cents)


def maturing_cents(*, user: User, currency: str, at: datetime | None = None) -> int:
    """Net credits of charges to the user's payable booked in (at - delay, at]."""
    at = at or timezone.now()
    sums = LedgerEntry.objects.filter(
        account__code=user_code(user.pk, "payable", currency),
        event_source=DELAYED_SOURCE,
        created_at__gt=at - settings.PAYOUTS_AVAILABILITY_DELAY,
        created_at__lte=at,
    ).aggregate(
        credits=Sum("amount_cents", filter=Q(type=Side.CREDIT)),
        debits=Sum("amount_cents", filter=Q(type=Side.DEBIT)),
    )
    return max(0, (sums["credits"] or 0) - (sums["debits"] or 0))


def payout_balance(*, user: User, currency: str, at: datetime | None = None) -> PayoutBalance:
    currency = currency.upper()
    code = user_code(user.pk, "payable", currency)
    payable = account_balance(code=code) if at is None else balance_at(code=code, at=at)
    maturing = maturing_cents(user=user, currency=currency, at=at)
    in_flight = (
        Payout.objects.filter(
            user_id=user.pk, currency=currency, status__in=UNSETTLED_STATUSES
        ).aggregate(total=Sum("amount_cents"))["total"]
        or 0
    )
    return PayoutBalance(
        currency=currency,
        payable_cents=payable,
        maturing_cents=maturing,
        available_cents=max(0, payable - maturing),
        in_flight_cents=in_flight,
    )


def available_balance(*, user: User, currency: str, at: datetime | None = None) -> int:
    """What the user may be paid out now in `currency`: payable - maturing earnings, and 0
    when that is negative (a debt). Payouts in flight and held are already out of payable
    (reserved in payout_clearing)."""
    return payout_balance(user=user, currency=currency, at=at).available_cents


def payout_currencies(*, user: User) -> list[str]:
    """Currencies in which the user has a payable account."""
    return sorted(
        b.currency
        for b in balances(owner_id=user.pk)
        if b.code == user_code(user.pk, "payable", b.currency)
    )


def recipients_with_payable() -> list[tuple[str, str]]:
    """(user id, currency) of every payable account with a positive balance (the nightly
    run's candidates; run under the system context)."""
    found = []
    for b in balances():
        is_payable = b.owner_id is not None and b.code == user_code(
            b.owner_id, "payable", b.currency
        )
        if is_payable and b.balance_cents > 0:
            found.append((str(b.owner_id), b.currency))
    return sorted(found)


def payouts_for(
    *,
    user: User,
    status: str | None = None,
    currency: str | None = None,
    method: str | None = None,
    initiated_from: datetime | None = None,
    initiated_to: datetime | None = None,
) -> QuerySet[Payout]:
    """The user's payouts (every user's, for an admin), newest first."""
    rows = Payout.objects.all()
    if not user.is_admin:
        rows = rows.filter(user_id=user.pk)
    if status:
        rows = rows.filter(status=status)
    if currency:
        rows = rows.filter(currency=currency.upper())
    if method:
        rows = rows.filter(method=method)
    if initiated_from:
        rows = rows.filter(initiated_at__gte=initiated_from)
    if initiated_to:
        rows = rows.filter(initiated_at__lt=initiated_to)
    return rows.order_by("-initiated_at", "-id")


def payout_for(*, user: User, payout_id: int) -> Payout:
    """One payout the user may see; another user's is NotFound (404), never 403."""
    payout = None
    if 0 < payout_id <= MAX_BIGINT:
        payout = payouts_for(user=user).filter(pk=payout_id).first()
    if payout is None:
        raise NotFound(f"payout {payout_id} not found")
    return payout


def unfinished_payouts() -> QuerySet[Payout]:
    """Payouts whose Stripe steps may still be owed: pending (no confirmed transfer),
    instant ones in flight without their connected-account payout, and failed ones whose
    transfer was not pulled back yet. Oldest first."""
    pending = Q(status=PayoutStatus.PENDING)
    instant_without_payout = Q(
        status=PayoutStatus.IN_FLIGHT, method=PayoutMethod.INSTANT, stripe_payout_id__isnull=True
    )
    transfer_to_pull_back = Q(
        status=PayoutStatus.FAILED,
        stripe_transfer_id__isnull=False,
        stripe_transfer_reversal_id="",
        reversed_cents__lt=F("amount_cents") - F("fee_cents"),
    )
    return Payout.objects.filter(pending | instant_without_payout | transfer_to_pull_back).order_by(
        "initiated_at", "id"
    )


@dataclass(frozen=True)
class ClearingLine:
    currency: str
    clearing_cents: int  # the platform's payout_clearing balance
    unsettled_cents: int  # what unsettled payouts reserved

    @property
    def matches(self) -> bool:
        return self.clearing_cents == self.unsettled_cents


def clearing_summary() -> list[ClearingLine]:
    """Per currency: the clearing balance beside the payouts that should explain it."""
    unsettled: dict[str, int] = {}
    for row in (
        Payout.objects.filter(status__in=UNSETTLED_STATUSES)
        .values("currency")
        .annotate(amount=Sum("amount_cents"))
    ):
        unsettled[row["currency"]] = row["amount"]
    clearing = {
        b.currency: b.balance_cents
        for b in balances()
        if b.code == platform_code("payout_clearing", b.currency)
    }
    return [
        ClearingLine(currency, clearing.get(currency, 0), unsettled.get(currency, 0))
        for currency in sorted(clearing.keys() | unsettled.keys())
    ]
