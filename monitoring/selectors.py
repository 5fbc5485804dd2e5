"""Reads of the monitoring app: the last runs, open alerts, and what the checks look for.

Row-level security applies: callers run under the system or an admin context.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from monitoring.models import Alert, ReconciliationRun, RunStatus, VerificationRun
from monitoring.reconciliation import LedgerItem, payout_id_of
from payouts.models import Payout, PayoutStatus
from treasury.stripe.models import EventStatus, StripeEventProcessing

STRIPE_BALANCE_CODE_PATTERN = "platform:stripe_balance:%"


def last_verification() -> VerificationRun | None:
    """The most recent finished ledger verification (for the dashboard's status chart)."""
    return (
        VerificationRun.objects.exclude(status=RunStatus.RUNNING)
        .order_by("-started_at", "-id")
        .first()
    )


def last_reconciliation() -> ReconciliationRun | None:
    return (
        ReconciliationRun.objects.exclude(status=RunStatus.RUNNING)
        .order_by("-started_at", "-id")
        .first()
    )


def open_alerts() -> QuerySet[Alert]:
    return Alert.objects.filter(resolved_at__isnull=True).order_by("-last_seen_at", "-id")


def open_alert(*, key: str) -> Alert | None:
    return Alert.objects.filter(key=key, resolved_at__isnull=True).first()


def undelivered_alerts(*, max_attempts: int, lease: timedelta) -> QuerySet[Alert]:
    """Open alerts not sent yet whose last attempt (if any) is older than the lease."""
    stale = timezone.now() - lease
    return (
        open_alerts()
        .filter(notified_at__isnull=True, notify_attempts__lt=max_attempts)
        .exclude(notify_claimed_at__gt=stale)
    )


# --- the ledger side of a reconciliation ---

_LEDGER_ITEMS_SQL = """
    SELECT t.idempotency_key, t.effective_at, e.currency,
           sum(CASE WHEN e.type = 'debit' THEN e.amount_cents ELSE -e.amount_cents END)
      FROM ledger_transactions t
      JOIN ledger_entries e ON e.transaction_id = t.id
      JOIN ledger_accounts a ON a.id = e.account_id
     WHERE a.code LIKE %s AND ({where})
     GROUP BY t.id, e.currency
"""


def _ledger_items(where: str, params: list[object]) -> list[LedgerItem]:
    with connection.cursor() as cursor:
        cursor.execute(
            _LEDGER_ITEMS_SQL.format(where=where), [STRIPE_BALANCE_CODE_PATTERN, *params]
        )
        rows = cursor.fetchall()
    return [
        LedgerItem(
            idempotency_key=key,
            net_cents=int(net),
            currency=currency,
            effective_at=effective_at,
            payout_id=payout_id_of(key),
        )
        for key, effective_at, currency, net in rows
        if net  # a posting that moved Stripe's balance both ways by the same amount did not move it
    ]


def stripe_balance_postings(*, since: datetime, until: datetime) -> list[LedgerItem]:
    """Every ledger transaction that moved the platform's Stripe balance with its effective
    time in [since, until), with its net movement per currency (all shards summed)."""
    return _ledger_items("t.effective_at >= %s AND t.effective_at < %s", [since, until])


def stripe_balance_postings_by_key(*, keys: Iterable[str]) -> list[LedgerItem]:
    """The postings with these idempotency keys, whenever they are effective."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    return _ledger_items("t.idempotency_key = ANY(%s)", [wanted])


def transfers_of_payouts(*, payout_ids: Iterable[int]) -> dict[int, str]:
    """Each payout's Stripe transfer id (the reconciliation's match for its settle)."""
    ids = sorted(set(payout_ids))
    if not ids:
        return {}
    rows = Payout.objects.filter(pk__in=ids, stripe_transfer_id__isnull=False)
    return dict(rows.values_list("pk", "stripe_transfer_id"))


def payouts_of_transfers(*, transfer_ids: Iterable[str]) -> dict[str, int]:
    ids = sorted(set(transfer_ids))
    if not ids:
        return {}
    rows = Payout.objects.filter(stripe_transfer_id__in=ids)
    return {transfer: pk for pk, transfer in rows.values_list("pk", "stripe_transfer_id")}


# --- what the checks look for ---


@dataclass(frozen=True)
class StuckPayout:
    payout_id: int
    status: str
    amount_cents: int
    currency: str
    since: datetime


def stuck_payouts(*, older_than: timedelta | None = None) -> list[StuckPayout]:
    """Payouts with money reserved but not settled (pending: the transfer is not confirmed;
    in_flight: an instant payout on its way) whose last change is older than the threshold.
    Held payouts wait for a human on purpose and are not stuck."""
    threshold = older_than or timedelta(minutes=settings.MONITORING_PAYOUT_STUCK_MINUTES)
    cutoff = timezone.now() - threshold
    rows = Payout.objects.filter(
        status__in=[PayoutStatus.PENDING, PayoutStatus.IN_FLIGHT], updated_at__lt=cutoff
    ).order_by("updated_at", "id")
    return [
        StuckPayout(p.pk, p.status, p.amount_cents, p.currency, p.updated_at)
        for p in rows.only("id", "status", "amount_cents", "currency", "updated_at")
    ]


@dataclass(frozen=True)
class FailingEvent:
    stripe_event_id: str
    event_type: str
    attempts: int
    last_error: str


def failing_webhook_events(*, min_attempts: int | None = None) -> list[FailingEvent]:
    """Stripe events whose processing failed at least `min_attempts` times and still fails."""
    threshold = min_attempts or settings.MONITORING_WEBHOOK_FAILED_ATTEMPTS
    rows = StripeEventProcessing.objects.filter(
        status=EventStatus.FAILED, attempts__gte=threshold
    ).order_by("id")
    return [
        FailingEvent(r.stripe_event_id, r.event_type, r.attempts, r.last_error[:500])
        for r in rows.only("stripe_event_id", "event_type", "attempts", "last_error")
    ]
