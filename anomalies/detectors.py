"""The rule detectors: small named functions, each taking a time window and returning findings.

Every rule reads the books (ledger transactions by `effective_at`, so a replayed or backdated
history is judged by when the money moved), plus the Stripe event records for the webhook
rule. They only read; `services.run_detectors` records what they find. They expect the
system context (they read everyone's money).

Refunds are recognised in the ledger as transactions that reverse a charge (however the
refunds module posts them, `ledger.services.reverse_transaction` is the one way to unwind a
split) or whose source is listed in REFUND_SOURCES. Payouts are the payout module's
reservation postings (source `payout`, reference = payout id), less the released ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection

from anomalies.findings import Finding
from anomalies.models import Severity, SubjectType
from treasury.money_format import format_money

Detector = Callable[..., list[Finding]]
DETECTORS: dict[str, Detector] = {}

CHARGE_SOURCE = "stripe_charge"
PAYOUT_SOURCE = "payout"
PAYOUT_RELEASE_SOURCE = "payout_release"
REFUND_SOURCES = ("refund", "stripe_refund", "dispute", "stripe_dispute")


def detector(name: str) -> Callable[[Detector], Detector]:
    def register(function: Detector) -> Detector:
        function.detector_name = name  # type: ignore[attr-defined]
        DETECTORS[name] = function
        return function

    return register


def _rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- what the rules read ---


@dataclass(frozen=True)
class ChargeRow:
    transaction_id: int
    at: datetime
    buyer_id: str | None
    host_id: str | None
    currency: str
    gross_cents: int
    entry_id: int


def charges_between(since: datetime, until: datetime) -> list[ChargeRow]:
    """Booked charges: the gross is what the charge debited to Stripe's balance."""
    rows = _rows(
        """
        SELECT t.id, t.effective_at, t.metadata->>'buyer_id', t.metadata->>'host_id',
               e.currency, sum(e.amount_cents)::bigint, min(e.id)
          FROM ledger_transactions t
          JOIN ledger_entries e ON e.transaction_id = t.id AND e.type = 'debit'
          JOIN ledger_accounts a ON a.id = e.account_id AND a.code LIKE 'platform:stripe_balance:%%'
         WHERE t.event_source = %s AND t.effective_at >= %s AND t.effective_at < %s
         GROUP BY t.id, e.currency
         ORDER BY t.effective_at, t.id
        """,
        [CHARGE_SOURCE, since, until],
    )
    return [ChargeRow(*row) for row in rows]


def refunds_between(since: datetime, until: datetime) -> list[tuple[int, datetime, str | None]]:
    """(transaction id, when, host id) of each refund-like posting. A dispute counts once,
    by its opening (`dispute:<dp>:opened`), not again when it is won or lost."""
    return _rows(
        """
        SELECT t.id, t.effective_at,
               coalesce(t.metadata->>'host_id', o.metadata->>'host_id')
          FROM ledger_transactions t
          LEFT JOIN ledger_transactions o ON o.id = t.reverses_id
         WHERE t.effective_at >= %s AND t.effective_at < %s
           AND (o.event_source = %s OR t.event_source = ANY(%s))
           AND NOT (t.idempotency_key LIKE 'dispute:%%' AND t.idempotency_key NOT LIKE '%%:opened')
        """,
        [since, until, CHARGE_SOURCE, list(REFUND_SOURCES)],
    )


@dataclass(frozen=True)
class PayoutRow:
    payout_id: str
    at: datetime
    user_id: str
    currency: str
    amount_cents: int
    entry_id: int


def payouts_between(since: datetime, until: datetime) -> list[PayoutRow]:
    """Payout reservations (the recipient's payable debited), less released payouts."""
    rows = _rows(
        """
        SELECT t.reference_id, t.effective_at, e.user_id, e.currency, e.amount_cents, e.id
          FROM ledger_transactions t
          JOIN ledger_entries e ON e.transaction_id = t.id AND e.type = 'debit'
               AND e.user_id IS NOT NULL
         WHERE t.event_source = %s AND t.effective_at >= %s AND t.effective_at < %s
           AND NOT EXISTS (SELECT 1 FROM ledger_transactions r
                            WHERE r.event_source = %s AND r.reference_id = t.reference_id)
         ORDER BY t.effective_at, t.id
        """,
        [PAYOUT_SOURCE, since, until, PAYOUT_RELEASE_SOURCE],
    )
    return [PayoutRow(str(r[0]), r[1], str(r[2]), r[3], r[4], r[5]) for r in rows]


# --- the rules ---


@detector("duplicate_charge")
def detect_duplicate_charges(*, since: datetime, until: datetime) -> list[Finding]:
    """The same buyer charged the same amount by the same host within a few minutes."""
    gap = timedelta(minutes=settings.ANOMALIES_DUPLICATE_CHARGE_MINUTES)
    previous: dict[tuple[str, str, str, int], ChargeRow] = {}
    findings = []
    for charge in charges_between(since - gap, until):
        if not charge.buyer_id or not charge.host_id:
            continue  # a guest checkout: nobody to be charged twice
        key = (charge.buyer_id, charge.host_id, charge.currency, charge.gross_cents)
        first = previous.get(key)
        previous[key] = charge
        if first is None or charge.at - first.at > gap or charge.at < since:
            continue
        minutes = (charge.at - first.at).total_seconds() / 60
        findings.append(
            Finding(
                detector="duplicate_charge",
                subject_type=SubjectType.TRANSACTION,
                subject_id=str(charge.transaction_id),
                severity=Severity.MEDIUM,
                score=round(1 - minutes / (gap.total_seconds() / 60) / 2, 4),
                description=(
                    f"buyer {charge.buyer_id} paid host {charge.host_id}"
                    f" {format_money(charge.gross_cents, charge.currency)} twice within"
                    f" {minutes:.1f} minutes (transactions"
                    f" {first.transaction_id} and {charge.transaction_id})"
                ),
                observed_at=charge.at,
                features={
                    "buyer_id": charge.buyer_id,
                    "amount_cents": charge.gross_cents,
                    "currency": charge.currency,
                    "first_transaction_id": first.transaction_id,
                    "minutes_apart": round(minutes, 2),
                },
                user_id=charge.host_id,
                related_entry_id=charge.entry_id,
            )
        )
    return findings


@detector("refund_ratio_spike")
def detect_refund_ratio_spike(*, since: datetime, until: datetime) -> list[Finding]:
    """A host whose refunds in the window are a large share of their charges, and well above
    their own usual share."""
    history_start = since - timedelta(days=settings.ANOMALIES_HISTORY_DAYS)
    charges: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # host -> [history, window]
    refunds: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    latest: dict[str, datetime] = {}
    for charge in charges_between(history_start, until):
        if charge.host_id:
            charges[charge.host_id][charge.at >= since] += 1
    for _, at, host_id in refunds_between(history_start, until):
        if host_id:
            refunds[host_id][at >= since] += 1
            if at >= since:
                latest[host_id] = max(at, latest.get(host_id, at))
    findings = []
    for host_id, (old_refunds, new_refunds) in refunds.items():
        if new_refunds < settings.ANOMALIES_REFUND_MIN_COUNT:
            continue
        old_charges, new_charges = charges[host_id]
        ratio = new_refunds / max(new_charges, 1)
        baseline = old_refunds / old_charges if old_charges else 0.0
        if ratio < settings.ANOMALIES_REFUND_MIN_RATIO:
            continue
        if baseline and ratio < settings.ANOMALIES_REFUND_SPIKE_FACTOR * baseline:
            continue
        findings.append(
            Finding(
                detector="refund_ratio_spike",
                subject_type=SubjectType.USER,
                subject_id=host_id,
                severity=Severity.HIGH if ratio >= 0.5 else Severity.MEDIUM,
                score=round(min(1.0, ratio), 4),
                description=(
                    f"host {host_id}: {new_refunds} refunds for {new_charges} charges since"
                    f" {since:%Y-%m-%d %H:%M} ({ratio:.0%}; usual {baseline:.0%})"
                ),
                observed_at=latest[host_id],
                features={
                    "window_charges": new_charges,
                    "window_refunds": new_refunds,
                    "window_ratio": round(ratio, 4),
                    "history_charges": old_charges,
                    "history_refunds": old_refunds,
                    "history_ratio": round(baseline, 4),
                },
                user_id=host_id,
            )
        )
    return findings


def _payout_history(until: datetime) -> dict[tuple[str, str], list[PayoutRow]]:
    by_user: dict[tuple[str, str], list[PayoutRow]] = defaultdict(list)
    for row in payouts_between(until - timedelta(days=settings.ANOMALIES_HISTORY_DAYS), until):
        by_user[(row.user_id, row.currency)].append(row)
    return by_user


@detector("payout_velocity")
def detect_payout_velocity(*, since: datetime, until: datetime) -> list[Finding]:
    """A day's payouts to a recipient far above their usual payout."""
    factor = settings.ANOMALIES_PAYOUT_VELOCITY_FACTOR
    findings = []
    for (user_id, currency), rows in _payout_history(until).items():
        for index, payout in enumerate(rows):
            if payout.at < since:
                continue
            day_start = payout.at - timedelta(hours=24)
            earlier = [r for r in rows[:index] if r.at < day_start]
            if len(earlier) < settings.ANOMALIES_PAYOUT_MIN_HISTORY:
                continue
            day_cents = sum(r.amount_cents for r in rows[: index + 1] if r.at >= day_start)
            total = sum(r.amount_cents for r in earlier)
            # day > factor * average, in integers
            if day_cents * len(earlier) <= factor * total:
                continue
            multiple = day_cents * len(earlier) / total
            findings.append(
                Finding(
                    detector="payout_velocity",
                    subject_type=SubjectType.PAYOUT,
                    subject_id=payout.payout_id,
                    severity=Severity.HIGH if multiple >= 2 * factor else Severity.MEDIUM,
                    score=round(min(1.0, multiple / (4 * factor)), 4),
                    description=(
                        f"{format_money(day_cents, currency)} paid out to {user_id} in 24 hours:"
                        f" {multiple:.1f}x their average payout of"
                        f" {format_money(total // len(earlier), currency)}"
                    ),
                    observed_at=payout.at,
                    features={
                        "day_cents": day_cents,
                        "average_cents": total // len(earlier),
                        "history_payouts": len(earlier),
                        "multiple": round(multiple, 2),
                        "currency": currency,
                    },
                    user_id=user_id,
                    related_entry_id=payout.entry_id,
                )
            )
    return findings


@detector("split_change_before_payout")
def detect_split_change_before_payout(*, since: datetime, until: datetime) -> list[Finding]:
    """A large payout shortly after a split rule paying (or owned by) the recipient changed:
    the classic way to redirect a host's money to oneself and cash it out."""
    if not apps.is_installed("splits"):
        return []
    from django.db.models import Q

    from splits.models import SplitRule

    hours = settings.ANOMALIES_SPLIT_CHANGE_HOURS
    findings = []
    for payout in payouts_between(since, until):
        large = settings.ANOMALIES_LARGE_PAYOUT_CENTS.get(payout.currency)
        if large is None or payout.amount_cents < large:
            continue
        window_start = payout.at - timedelta(hours=hours)
        changed = list(
            SplitRule.objects.filter(
                Q(owner_id=payout.user_id) | Q(rules__contains=[{"recipient_id": payout.user_id}]),
                Q(created_at__gte=window_start, created_at__lte=payout.at)
                | Q(archived_at__gte=window_start, archived_at__lte=payout.at),
            ).values_list("id", "version", "created_at")
        )
        if not changed:
            continue
        last_change = max(created for _, _, created in changed)
        hours_before = (payout.at - last_change).total_seconds() / 3600
        findings.append(
            Finding(
                detector="split_change_before_payout",
                subject_type=SubjectType.PAYOUT,
                subject_id=payout.payout_id,
                severity=Severity.HIGH,
                score=round(1 - hours_before / hours / 2, 4),
                description=(
                    f"payout {payout.payout_id} of"
                    f" {format_money(payout.amount_cents, payout.currency)} to"
                    f" {payout.user_id} {hours_before:.1f} hours after split rule"
                    f" {', '.join(f'{pk} v{version}' for pk, version, _ in changed)} changed"
                ),
                observed_at=payout.at,
                features={
                    "amount_cents": payout.amount_cents,
                    "currency": payout.currency,
                    "split_rules": [pk for pk, _, _ in changed],
                    "hours_after_change": round(hours_before, 2),
                },
                user_id=payout.user_id,
                related_entry_id=payout.entry_id,
            )
        )
    return findings


@detector("negative_balance_growing")
def detect_negative_balance_growing(*, since: datetime, until: datetime) -> list[Finding]:
    """A recipient's payable below zero (they owe the platform, after refunds of money
    already paid out) and deeper below than at the start of the window."""
    # Only accounts below zero now can be growing below zero: the maintained balance finds
    # them in one pass over the accounts, the entries are summed for those few only.
    rows = _rows(
        """
        SELECT a.code, a.owner_id, a.currency,
               -coalesce(sum(CASE WHEN e.type = 'debit' THEN e.amount_cents
                                  ELSE -e.amount_cents END)
                         FILTER (WHERE t.effective_at < %s), 0)::bigint,
               -coalesce(sum(CASE WHEN e.type = 'debit' THEN e.amount_cents
                                  ELSE -e.amount_cents END), 0)::bigint,
               max(t.effective_at) FILTER (WHERE t.effective_at >= %s AND e.type = 'debit')
          FROM (SELECT * FROM ledger_accounts
                 WHERE balance_cents < 0 AND code LIKE 'user:%%:payable:%%') a
          JOIN ledger_entries e ON e.account_id = a.id
          JOIN ledger_transactions t ON t.id = e.transaction_id
         WHERE t.effective_at < %s
         GROUP BY a.id, a.code, a.owner_id, a.currency
        """,
        [since, since, until],
    )
    findings = []
    for code, owner_id, currency, before_cents, after_cents, last_debit in rows:
        if after_cents >= 0 or after_cents >= before_cents or last_debit is None:
            continue
        growth = before_cents - after_cents
        findings.append(
            Finding(
                detector="negative_balance_growing",
                subject_type=SubjectType.USER,
                subject_id=str(owner_id),
                severity=Severity.HIGH if before_cents < 0 else Severity.MEDIUM,
                score=round(min(1.0, growth / max(abs(after_cents), 1)), 4),
                description=(
                    f"{code} went from {format_money(before_cents, currency)} to"
                    f" {format_money(after_cents, currency)}: the"
                    " recipient owes the platform more and more"
                ),
                observed_at=last_debit,
                features={
                    "account": code,
                    "balance_before_cents": before_cents,
                    "balance_after_cents": after_cents,
                    "growth_cents": growth,
                    "currency": currency,
                },
                user_id=owner_id,
            )
        )
    return findings


@detector("webhook_failures")
def detect_webhook_failures(*, since: datetime, until: datetime) -> list[Finding]:
    """A Stripe event whose processing failed again and again (money Stripe moved that the
    books may be missing)."""
    try:
        processing = apps.get_model("treasury", "StripeEventProcessing")
    except LookupError:
        return []
    failing = processing.objects.filter(
        status="failed",
        attempts__gte=settings.ANOMALIES_WEBHOOK_FAILED_ATTEMPTS,
        updated_at__lt=until,
    )
    return [
        Finding(
            detector="webhook_failures",
            subject_type=SubjectType.STRIPE_EVENT,
            subject_id=event.stripe_event_id,
            severity=Severity.HIGH,
            score=round(
                min(1.0, event.attempts / (3 * settings.ANOMALIES_WEBHOOK_FAILED_ATTEMPTS)), 4
            ),
            description=(
                f"Stripe event {event.stripe_event_id} ({event.event_type} on"
                f" {event.stripe_object_id}) failed {event.attempts} times:"
                f" {event.last_error[:200]}"
            ),
            observed_at=event.updated_at,
            features={
                "event_type": event.event_type,
                "stripe_object_id": event.stripe_object_id,
                "attempts": event.attempts,
                "last_error": event.last_error[:500],
            },
        )
        for event in failing
    ]


@detector("ledger_difference")
def detect_ledger_differences(*, since: datetime, until: datetime) -> list[Finding]:
    """Anything verify_ledger would report: the books disagree with themselves. Not
    windowed: a difference is wrong whenever it was made."""
    from ledger.selectors import ledger_differences

    findings = []
    for difference in ledger_differences():
        owner_id = None
        if difference.subject.startswith("user:"):
            owner_id = difference.subject.split(":")[1]
        findings.append(
            Finding(
                detector="ledger_difference",
                subject_type=SubjectType.LEDGER,
                subject_id=f"{difference.kind}:{difference.subject}"[:255],
                severity=Severity.HIGH,
                score=1.0,
                description=f"the ledger does not verify: {difference}",
                observed_at=until,
                features={
                    "kind": difference.kind,
                    "subject": difference.subject,
                    "expected": difference.expected,
                    "actual": difference.actual,
                },
                user_id=owner_id,
            )
        )
    return findings


RULE_DETECTORS = tuple(DETECTORS)
