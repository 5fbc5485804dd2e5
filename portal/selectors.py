"""Reads behind the hosts' and artists' pages.

Every query runs in the request's row-level-security context (the signed-in host or
artist), so PostgreSQL itself keeps the pages to the user's own rows; the filters below say
the same in Python. Writes go through the owning apps' services (views.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from ledger.chart import user_code
from ledger.models import LedgerEntry, Side
from ledger.selectors import account_balance, balances
from payouts.selectors import PayoutBalance, payout_balance, payout_currencies
from treasury.models import User

# What an entry on a host's or artist's account is, by the posting's event source, in words.
ENTRY_KINDS: dict[str, str] = {
    "stripe_charge": "Sale",
    "stripe_charge.reversal": "Sale reversed",
    "refund": "Refund",
    "dispute": "Dispute",
    "payout": "Payout",
    "payout_release": "Payout returned",
    "payout_transfer_reversal": "Payout clawed back",
    "manual_adjustment": "Adjustment",
}
EARNING_SOURCE = "stripe_charge"  # a sale's credit (less Stripe fees the recipient bore)
CHART_DAYS = (30, 90)


@dataclass(frozen=True)
class CurrencyBalance:
    """One currency of a recipient's money: the payout figures plus dispute holds."""

    payout: PayoutBalance
    held_cents: int

    @property
    def currency(self) -> str:
        return self.payout.currency


def currency_balances(*, user: User) -> list[CurrencyBalance]:
    """Per currency the user has a payable account in: balance, available, maturing, in
    payouts and held by open disputes (payouts.selectors decides what is available)."""
    return [
        CurrencyBalance(
            payout=payout_balance(user=user, currency=currency),
            held_cents=account_balance(code=user_code(user.pk, "held", currency)),
        )
        for currency in payout_currencies(user=user)
    ]


def account_currencies(*, user: User) -> list[str]:
    """Every currency the user has any ledger account in (for the entries' filter)."""
    return sorted({b.currency for b in balances(owner_id=user.pk)})


@dataclass(frozen=True)
class DailyEarnings:
    currency: str
    days: list[date]
    cents: list[int]  # one per day, 0 on days without sales

    @property
    def total_cents(self) -> int:
        return sum(self.cents)


def daily_earnings(
    *, user: User, currency: str, days: int, today: date | None = None
) -> DailyEarnings:
    """What the user earned from sales on each of the last `days` UTC days (today
    included): the sales' credits to their payable less the Stripe fees they bore on them,
    by the posting's effective day. One grouped query, at most `days` rows."""
    today = today or timezone.now().astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tzinfo=UTC)
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
    rows = (
        LedgerEntry.objects.filter(
            user_id=user.pk,
            currency=currency,
            account__code=user_code(user.pk, "payable", currency),
            event_source=EARNING_SOURCE,
            transaction__effective_at__gte=start,
            transaction__effective_at__lt=end,
        )
        .annotate(day=TruncDate("transaction__effective_at", tzinfo=UTC))
        .values("day")
        .annotate(
            credits=Sum("amount_cents", filter=Q(type=Side.CREDIT)),
            debits=Sum("amount_cents", filter=Q(type=Side.DEBIT)),
        )
    )
    by_day = {row["day"]: (row["credits"] or 0) - (row["debits"] or 0) for row in rows}
    span = [first + timedelta(days=n) for n in range(days)]
    return DailyEarnings(currency, span, [by_day.get(day, 0) for day in span])
