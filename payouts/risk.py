"""A payout's risk score, from signals a reviewer can read.

Each check looks at one thing (how old the account is, how this payout compares with the
recipient's history, how much money was taken back lately, whether the split rules changed
just before, open anomalies) and answers a `RiskSignal` with its weight and a sentence, or
None. Weights and the score are integer basis points (10,000 = certain): the score is the
sum of the weights, capped at 10,000; at PAYOUTS_RISK_HOLD_THRESHOLD_BPS or above the payout
is held for an admin.

Other modules add checks with `register_risk_check` (the anomalies module's open anomalies
go through `open_anomalies_hook` until it exists).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, Sum

from ledger.chart import user_code
from ledger.models import LedgerEntry, Side
from treasury.models import User
from treasury.money_format import format_money

# Weights in basis points: what each finding adds to the score (10,000 = hold whatever the
# threshold).
MAX_SCORE_BPS = 10_000
NEW_ACCOUNT_DAYS, NEW_ACCOUNT_WEIGHT = 7, 3000
YOUNG_ACCOUNT_DAYS, YOUNG_ACCOUNT_WEIGHT = 30, 1000
VELOCITY_HISTORY_DAYS, VELOCITY_MIN_HISTORY, VELOCITY_FACTOR, VELOCITY_WEIGHT = 90, 3, 3, 3000
BURST_HOURS, BURST_COUNT, BURST_WEIGHT = 24, 3, 2000
TAKEBACK_DAYS = 30
TAKEBACK_RATIOS = ((3, 10, 4000), (1, 10, 2000))  # (numerator, denominator, weight), worst first
RULE_CHANGE_HOURS, RULE_CHANGE_WEIGHT = 24, 3000
ANOMALY_WEIGHT = 5000

# Ledger sources that are not money taken back from a recipient.
EARNING_SOURCE = "stripe_charge"
PAYOUT_SOURCE_PREFIX = "payout"


@dataclass(frozen=True)
class RiskSignal:
    name: str
    weight: int  # basis points
    reason: str


@dataclass(frozen=True)
class PayoutRequest:
    """What a check may look at."""

    user: User
    amount_cents: int
    currency: str
    method: str
    at: datetime


@dataclass(frozen=True)
class RiskAssessment:
    score: int  # basis points, 0 to MAX_SCORE_BPS
    signals: tuple[RiskSignal, ...]

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(signal) for signal in self.signals]

    @property
    def should_hold(self) -> bool:
        return self.score >= settings.PAYOUTS_RISK_HOLD_THRESHOLD_BPS


RiskCheck = Callable[[PayoutRequest], RiskSignal | None]
_CHECKS: list[RiskCheck] = []


def register_risk_check(check: RiskCheck) -> RiskCheck:
    """Add a check (usable as a decorator); registering the same one twice is a no-op."""
    if check not in _CHECKS:
        _CHECKS.append(check)
    return check


def unregister_risk_check(check: RiskCheck) -> None:
    if check in _CHECKS:
        _CHECKS.remove(check)


def assess(*, request: PayoutRequest) -> RiskAssessment:
    """Run every check (in the caller's context: payouts assess as the system)."""
    signals = tuple(signal for check in _CHECKS if (signal := check(request)) is not None)
    score = min(MAX_SCORE_BPS, sum(signal.weight for signal in signals))
    return RiskAssessment(score=score, signals=signals)


# --- the checks ---


@register_risk_check
def account_age(request: PayoutRequest) -> RiskSignal | None:
    age = request.at - request.user.created_at
    if age < timedelta(days=NEW_ACCOUNT_DAYS):
        return RiskSignal(
            "account_age", NEW_ACCOUNT_WEIGHT, f"account is {age.days} days old (new)"
        )
    if age < timedelta(days=YOUNG_ACCOUNT_DAYS):
        return RiskSignal(
            "account_age", YOUNG_ACCOUNT_WEIGHT, f"account is {age.days} days old (young)"
        )
    return None


def _previous_payouts(request: PayoutRequest) -> Any:
    from payouts.models import Payout, PayoutStatus

    return Payout.objects.filter(user_id=request.user.pk, currency=request.currency).exclude(
        status__in=[PayoutStatus.FAILED, PayoutStatus.CANCELLED]
    )


@register_risk_check
def payout_velocity(request: PayoutRequest) -> RiskSignal | None:
    """Much more than usual: above VELOCITY_FACTOR x the average of recent payouts."""
    history = _previous_payouts(request).filter(
        initiated_at__gte=request.at - timedelta(days=VELOCITY_HISTORY_DAYS)
    )
    count = history.count()
    if count < VELOCITY_MIN_HISTORY:
        return None
    total = history.aggregate(total=Sum("amount_cents"))["total"] or 0
    # amount > factor * total / count, in integers
    if request.amount_cents * count > VELOCITY_FACTOR * total:
        return RiskSignal(
            "payout_velocity",
            VELOCITY_WEIGHT,
            f"{format_money(request.amount_cents, request.currency)} is over {VELOCITY_FACTOR}x the"
            f" average of the last {count} payouts"
            f" ({format_money(total // count, request.currency)})",
        )
    return None


@register_risk_check
def payout_burst(request: PayoutRequest) -> RiskSignal | None:
    """Many payouts in a short time."""
    recent = (
        _previous_payouts(request)
        .filter(initiated_at__gte=request.at - timedelta(hours=BURST_HOURS))
        .count()
    )
    if recent >= BURST_COUNT:
        return RiskSignal(
            "payout_burst", BURST_WEIGHT, f"{recent} payouts in the last {BURST_HOURS} hours"
        )
    return None


@register_risk_check
def money_taken_back(request: PayoutRequest) -> RiskSignal | None:
    """Refunds, disputes and corrections (debits to payable that are neither a charge's own
    Stripe fee nor a payout) against what charges credited, over TAKEBACK_DAYS."""
    sums = LedgerEntry.objects.filter(
        account__code=user_code(request.user.pk, "payable", request.currency),
        created_at__gte=request.at - timedelta(days=TAKEBACK_DAYS),
    ).aggregate(
        earned=Sum("amount_cents", filter=Q(type=Side.CREDIT, event_source=EARNING_SOURCE)),
        taken=Sum(
            "amount_cents",
            filter=Q(type=Side.DEBIT)
            & ~Q(event_source=EARNING_SOURCE)
            & ~Q(event_source__startswith=PAYOUT_SOURCE_PREFIX),
        ),
    )
    earned, taken = sums["earned"] or 0, sums["taken"] or 0
    if not taken:
        return None
    for numerator, denominator, weight in TAKEBACK_RATIOS:
        if taken * denominator >= earned * numerator:
            return RiskSignal(
                "refunds_and_disputes",
                weight,
                f"{taken} of {earned} {request.currency} earned in {TAKEBACK_DAYS} days was"
                " taken back (refunds, disputes, corrections)",
            )
    return None


@register_risk_check
def split_rule_changed(request: PayoutRequest) -> RiskSignal | None:
    """A split rule that pays this user (or that they own) was written just before."""
    from splits.models import SplitRule

    since = request.at - timedelta(hours=RULE_CHANGE_HOURS)
    me = str(request.user.pk)
    changed = SplitRule.objects.filter(
        Q(owner_id=request.user.pk) | Q(rules__contains=[{"recipient_id": me}]),
        Q(created_at__gte=since) | Q(archived_at__gte=since),
    ).count()
    if changed:
        return RiskSignal(
            "split_rule_change",
            RULE_CHANGE_WEIGHT,
            f"{changed} split rule version(s) paying or owned by the user changed in the last"
            f" {RULE_CHANGE_HOURS} hours",
        )
    return None


def open_anomalies_hook(user: User) -> int:
    """Open anomalies about the user: the anomalies module's selector once it exists."""
    try:
        from anomalies.selectors import open_anomaly_count  # type: ignore[import-not-found]
    except ImportError:
        return 0
    return int(open_anomaly_count(user=user))


@register_risk_check
def open_anomalies(request: PayoutRequest) -> RiskSignal | None:
    count = open_anomalies_hook(request.user)
    if count:
        return RiskSignal("open_anomalies", ANOMALY_WEIGHT, f"{count} open anomalies")
    return None
