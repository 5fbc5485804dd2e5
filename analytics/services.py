"""Computing the daily aggregates from the ledger, incrementally and idempotently.

Every posting's outbox event marks its (day, currency) as changed (`mark_changed_days`, the
`analytics.mark_changed_days` event handler); the `refresh_analytics` job recomputes each
marked day whole from the ledger and clears the mark. A day is small and recomputing it is
idempotent, so a replayed or redelivered event, a handler registered late or a manual
`recompute_analytics` can never count a posting twice.

What each figure is, from the entries of the transactions effective that day (UTC):
- gross volume: the Stripe balance debited by charges (`stripe_charge`), less what reversed
  charge postings credited back; charge count: `stripe_charge` transactions;
- platform fees: net credits to `fee_revenue` (charges' fees, less refunds' give-backs, plus
  instant payout fees on the platform's row);
- refunds / disputes: net credits to the Stripe balance by `refund` / `dispute` postings;
- payouts: net debits to recipients' payables by payout reservations, less releases and
  transfer reversals.
A host's row counts their charges (the transactions' `host_id`, or the reversed charge's);
a recipient's row counts payouts to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

from analytics.models import DailyAggregate, PendingDay
from ledger.money import normalize_currency
from treasury.errors import InvalidInput
from treasury.rls import system_context

CHARGE_SOURCE = "stripe_charge"
CHARGE_REVERSAL_SOURCE = "stripe_charge.reversal"
REFUND_SOURCE = "refund"
DISPUTE_SOURCE = "dispute"
PAYOUT_SOURCES = ("payout", "payout_release", "payout_transfer_reversal")
MAX_RECOMPUTE_DAYS = 3660

_RECOMPUTE_SQL = f"""
INSERT INTO analytics_daily (
    day, currency, user_id, gross_volume_cents, platform_fee_cents, refunds_cents,
    disputes_cents, payouts_cents, charge_count, computed_at
)
WITH legs AS (
    SELECT t.id AS transaction_id,
           t.event_source,
           CASE WHEN t.event_source = ANY(%(payout_sources)s) THEN e.user_id
                ELSE nullif(coalesce(t.metadata->>'host_id', r.metadata->>'host_id'), '')::uuid
           END AS party_id,
           CASE WHEN a.owner_id IS NULL THEN split_part(a.code, ':', 2)
                ELSE split_part(a.code, ':', 3)
           END AS account_name,
           CASE WHEN e.type = 'debit' THEN e.amount_cents ELSE -e.amount_cents END AS debit_cents
      FROM ledger_transactions t
      JOIN ledger_entries e ON e.transaction_id = t.id
      JOIN ledger_accounts a ON a.id = e.account_id
      LEFT JOIN ledger_transactions r ON r.id = t.reverses_id
     WHERE t.effective_at >= %(start)s AND t.effective_at < %(end)s
       AND e.currency = %(currency)s
), figures AS (
    SELECT transaction_id, event_source, party_id,
           CASE WHEN account_name = 'stripe_balance' AND event_source = '{CHARGE_SOURCE}'
                     AND debit_cents > 0 THEN debit_cents
                WHEN account_name = 'stripe_balance' AND event_source = '{CHARGE_REVERSAL_SOURCE}'
                     AND debit_cents < 0 THEN debit_cents
                ELSE 0 END AS gross_cents,
           CASE WHEN account_name = 'fee_revenue' THEN -debit_cents ELSE 0 END AS fee_cents,
           CASE WHEN account_name = 'stripe_balance' AND event_source = '{REFUND_SOURCE}'
                THEN -debit_cents ELSE 0 END AS refund_cents,
           CASE WHEN account_name = 'stripe_balance' AND event_source = '{DISPUTE_SOURCE}'
                THEN -debit_cents ELSE 0 END AS dispute_cents,
           CASE WHEN account_name = 'payable' AND event_source = ANY(%(payout_sources)s)
                THEN debit_cents ELSE 0 END AS payout_cents
      FROM legs
)
SELECT %(day)s, %(currency)s, party_id,
       coalesce(sum(gross_cents), 0), coalesce(sum(fee_cents), 0),
       coalesce(sum(refund_cents), 0), coalesce(sum(dispute_cents), 0),
       coalesce(sum(payout_cents), 0),
       count(DISTINCT transaction_id) FILTER (WHERE event_source = '{CHARGE_SOURCE}'),
       now()
  FROM figures
 GROUP BY GROUPING SETS ((), (party_id))
HAVING count(*) > 0 AND (grouping(party_id) = 1 OR party_id IS NOT NULL)
"""


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _mark(pairs: set[tuple[date, str]]) -> None:
    if not pairs:
        return
    values = ", ".join(["(%s, %s, now())"] * len(pairs))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO analytics_pending_days (day, currency, marked_at)"
            f" VALUES {values} ON CONFLICT (day, currency) DO UPDATE SET marked_at = now()",
            [item for pair in sorted(pairs) for item in pair],
        )


@transaction.atomic
def mark_changed_days(*, days: Iterable[tuple[date, str]]) -> None:
    """Note that these (day, currency) pairs need recomputing. Idempotent."""
    with system_context():
        _mark({(day, normalize_currency(currency)) for day, currency in days})


@transaction.atomic
def recompute_day(*, day: date, currency: str) -> list[DailyAggregate]:
    """Replace the day's rows for `currency` by a fresh computation from the ledger."""
    currency = normalize_currency(currency)
    start, end = _day_bounds(day)
    with system_context():
        DailyAggregate.objects.filter(day=day, currency=currency).delete()
        with connection.cursor() as cursor:
            cursor.execute(
                _RECOMPUTE_SQL,
                {
                    "day": day,
                    "currency": currency,
                    "start": start,
                    "end": end,
                    "payout_sources": list(PAYOUT_SOURCES),
                },
            )
        return list(DailyAggregate.objects.filter(day=day, currency=currency))


def refresh_analytics(*, limit: int = 1000) -> int:
    """Recompute the days marked changed, each in its own transaction; returns how many.

    A day is unmarked in the transaction that recomputed it. A posting committed after the
    recomputation read the ledger marks the day again (its event is delivered after its
    commit), so no posting is ever left out.
    """
    done = 0
    while done < limit:
        with transaction.atomic(), system_context():
            pending = (
                PendingDay.objects.select_for_update(skip_locked=True)
                .order_by("day", "currency")
                .first()
            )
            if pending is None:
                break
            recompute_day(day=pending.day, currency=pending.currency)
            pending.delete()
        done += 1
    return done


def _ledger_currencies() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT currency FROM ledger_accounts ORDER BY currency")
        return [row[0] for row in cursor.fetchall()]


def recompute_range(*, start: date, end: date, currency: str | None = None) -> int:
    """Recompute every day from `start` to `end` inclusive (all currencies, or one): the
    repair tool, and the daily safety net. Returns the number of (day, currency) computed."""
    if end < start:
        raise InvalidInput("the last day is before the first", fields={"to": ["before from"]})
    if (end - start).days > MAX_RECOMPUTE_DAYS:
        raise InvalidInput(f"at most {MAX_RECOMPUTE_DAYS} days at once")
    with system_context():
        currencies = [normalize_currency(currency)] if currency else _ledger_currencies()
    count = 0
    day = start
    while day <= end:
        for code in currencies:
            recompute_day(day=day, currency=code)
            count += 1
        day += timedelta(days=1)
    return count


def recompute_recent_days() -> int:
    today = timezone.now().astimezone(UTC).date()
    return recompute_range(start=today - timedelta(days=1), end=today)
