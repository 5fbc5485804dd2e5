"""Every write of the monitoring app: verification and reconciliation runs, alerts raised,
delivered, resolved, and the periodic checks that raise and clear them.

Alerts: an incident has a stable key (`payout-stuck:42`, `ledger-verify`). `raise_alert`
keeps one open alert per key (PostgreSQL's partial unique index is the guarantee; a check
that sees the incident again only bumps `last_seen_at` and `count`). A new alert is handed
to django-q2 after commit (`deliver_alert`): critical ones go to the Slack incoming webhook
(SLACK_WEBHOOK_URL; the ops mailing list when it is not set), warnings to OPS_EMAILS. A send
that fails raises, so django-q2 runs it again, and the check job re-queues what is still
unsent; a lease (`notify_claimed_at`) keeps two workers from sending the same alert.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any

import stripe
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from ledger.selectors import ledger_differences
from monitoring import selectors
from monitoring.models import (
    Alert,
    AlertSeverity,
    ReconciliationDifference,
    ReconciliationRun,
    RunStatus,
    VerificationRun,
)
from monitoring.reconciliation import (
    Comparison,
    Difference,
    LedgerItem,
    StripeItem,
    compare,
    ledger_match_key,
    stripe_item,
    stripe_match_key,
)
from treasury.errors import Conflict, Forbidden, InvalidInput, NotFound
from treasury.models import User
from treasury.money_format import format_money
from treasury.rls import system_context
from treasury.services import record_audit, snapshot
from treasury.stripe.client import as_dict, stripe_client

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

VERIFY_KEY = "ledger-verify"
VERIFY_STALE_KEY = "verify-stale"
PAYOUT_STUCK_PREFIX = "payout-stuck:"
WEBHOOK_FAILING_PREFIX = "webhook-failing:"
# How many differences a run keeps in an alert's text (all are in the run's table).
ALERT_LINES = 20
# Balance transactions per page of Stripe's list (Stripe's maximum); every page is read.
STRIPE_PAGE_SIZE = 100
# A delivery claimed this long ago without an answer is presumed dead and may be retried.
DELIVERY_LEASE = timedelta(minutes=2)


# --- alerts ---------------------------------------------------------------------------


@transaction.atomic
def raise_alert(
    *,
    key: str,
    severity: AlertSeverity,
    title: str,
    message: str = "",
    details: dict[str, Any] | None = None,
) -> Alert:
    """Record that the incident `key` is happening. The first sighting opens an alert and
    queues its delivery after commit; later ones only count (one incident, one message)."""
    now = timezone.now()
    with system_context():
        alert = Alert.objects.select_for_update().filter(key=key, resolved_at__isnull=True).first()
        if alert is None:
            try:
                with transaction.atomic():  # a concurrent check may open it first
                    alert = Alert.objects.create(
                        key=key,
                        severity=severity,
                        title=title[:255],
                        message=message,
                        details=details or {},
                        first_seen_at=now,
                        last_seen_at=now,
                    )
            except IntegrityError:
                alert = Alert.objects.select_for_update().get(key=key, resolved_at__isnull=True)
            else:
                alert.was_raised = True  # type: ignore[attr-defined]
                transaction.on_commit(partial(enqueue_delivery, alert_id=alert.pk))
                return alert
        alert.last_seen_at = now
        alert.count += 1
        alert.message = message or alert.message
        alert.details = details if details is not None else alert.details
        alert.save(update_fields=["last_seen_at", "count", "message", "details"])
    alert.was_raised = False  # type: ignore[attr-defined]
    return alert


@transaction.atomic
def clear_alerts(
    *,
    key: str | None = None,
    prefix: str | None = None,
    still_open: Iterable[str] = (),
    note: str,
) -> list[Alert]:
    """The system resolves the open alert `key`, or those whose key starts with `prefix`
    but `still_open`: their incident is over. Audited as `alert.clear`."""
    if (key is None) == (prefix is None):
        raise InvalidInput("name either one alert key or a key prefix")
    keep = set(still_open)
    cleared: list[Alert] = []
    with system_context():
        rows = Alert.objects.select_for_update().filter(resolved_at__isnull=True)
        rows = rows.filter(key=key) if key is not None else rows.filter(key__startswith=prefix)
        for alert in rows.order_by("id"):
            if alert.key in keep:
                continue
            before = snapshot(alert)
            alert.resolved_at = timezone.now()
            alert.resolution_note = note
            alert.save(update_fields=["resolved_at", "resolution_note"])
            record_audit(
                actor=None, action="alert.clear", target=alert, before=before, after=snapshot(alert)
            )
            cleared.append(alert)
    return cleared


@transaction.atomic
def resolve_alert(*, alert_id: int, actor: User, note: str) -> Alert:
    """An admin closes an incident with a note (audited `alert.resolve`). If it is still
    happening, the next check opens a new alert for it. Unknown: 404; resolved: 409."""
    if not getattr(actor, "is_admin", False):
        raise Forbidden("only admins may resolve alerts")
    note = (note or "").strip()
    if not note:
        raise InvalidInput("a resolution note is required", fields={"note": ["required"]})
    with system_context():
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None:
            raise NotFound(f"no alert {alert_id}", fields={"id": ["not found"]})
        if alert.resolved_at is not None:
            raise Conflict(
                f"alert {alert_id} was already resolved at {alert.resolved_at:%Y-%m-%d %H:%M}",
                fields={"id": ["already resolved"]},
            )
        before = snapshot(alert)
        alert.resolved_at = timezone.now()
        alert.resolved_by = actor
        alert.resolution_note = note
        alert.save(update_fields=["resolved_at", "resolved_by", "resolution_note"])
        record_audit(
            actor=actor,
            action="alert.resolve",
            target=alert,
            before=before,
            after=snapshot(alert),
            details={"note": note},
        )
    return alert


def enqueue_delivery(*, alert_id: int) -> None:
    """Hand the alert to django-q2 (after commit). If the broker is down the check job
    queues it again later."""
    from django_q.tasks import async_task

    try:
        async_task(
            "monitoring.tasks.deliver_alert",
            alert_id,
            task_name=f"alert-{alert_id}",
            group="alerts",
        )
    except Exception:
        logger.exception("alert %s could not be queued; the check job will retry", alert_id)


def _claim(alert_id: int) -> Alert | None:
    with transaction.atomic(), system_context():
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None or alert.resolved_at is not None or alert.notified_at is not None:
            return None
        if alert.notify_claimed_at and alert.notify_claimed_at > timezone.now() - DELIVERY_LEASE:
            return None  # another worker is sending it right now
        alert.notify_claimed_at = timezone.now()
        alert.notify_attempts += 1
        alert.save(update_fields=["notify_claimed_at", "notify_attempts"])
        return alert


def deliver_alert(*, alert_id: int) -> bool:
    """Send one alert, once: True if this call sent it. The send happens outside any
    transaction; a failure is written on the alert and raised (django-q2 retries)."""
    alert = _claim(alert_id)
    if alert is None:
        return False
    try:
        channel = _send(alert)
    except Exception as exc:
        with transaction.atomic(), system_context():
            Alert.objects.filter(pk=alert_id).update(
                last_error=f"{type(exc).__name__}: {exc}"[:2000], notify_claimed_at=None
            )
        logger.warning("alert %s (%s) could not be sent: %s", alert_id, alert.key, exc)
        raise
    with transaction.atomic(), system_context():
        Alert.objects.filter(pk=alert_id).update(
            notified_at=timezone.now(), notify_claimed_at=None, last_error=""
        )
    logger.info("alert %s (%s) sent to %s", alert_id, alert.key, channel)
    return True


def _send(alert: Alert) -> str:
    text = f"Treasury {alert.severity}: {alert.title}"
    if alert.message:
        text += f"\n{alert.message}"
    if alert.severity == AlertSeverity.CRITICAL and settings.SLACK_WEBHOOK_URL:
        request = urllib.request.Request(  # noqa: S310  (a URL from the settings)
            settings.SLACK_WEBHOOK_URL,
            data=json.dumps({"text": text}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        timeout = settings.MONITORING_ALERT_TIMEOUT_SECONDS
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
        return "slack"
    if not settings.OPS_EMAILS:
        logger.error("no OPS_EMAILS to send alert %s to: %s", alert.key, text)
        return "log"
    send_mail(
        subject=f"[Treasury {alert.severity}] {alert.title}"[:200],
        message=text,
        from_email=None,
        recipient_list=list(settings.OPS_EMAILS),
    )
    return "mail"


# --- ledger verification --------------------------------------------------------------


def verify_ledger(
    *, trigger: str = "command", chunk_size: int = 5000, progress: Progress | None = None
) -> tuple[VerificationRun, list[str]]:
    """Run verify_ledger's checks, keep the run, raise (or clear) the `ledger-verify`
    alert. Returns the run and every difference as verify_ledger prints it."""
    with transaction.atomic(), system_context():
        run = VerificationRun.objects.create(trigger=trigger)
    try:
        with transaction.atomic(), system_context():
            found = [str(d) for d in ledger_differences(chunk_size=chunk_size, progress=progress)]
    except Exception as exc:
        with transaction.atomic(), system_context():
            _finish(run, status=RunStatus.ERROR, error=f"{type(exc).__name__}: {exc}")
        raise
    return _record_verification(run=run, differences=found), found


@transaction.atomic
def _record_verification(*, run: VerificationRun, differences: list[str]) -> VerificationRun:
    with system_context():
        run.difference_count = len(differences)
        run.differences = differences[: settings.MONITORING_VERIFY_KEEP_DIFFERENCES]
        _finish(run, status=RunStatus.DIFFERENCES if differences else RunStatus.CLEAN)
        if differences:
            raise_alert(
                key=VERIFY_KEY,
                severity=AlertSeverity.CRITICAL,
                title=f"The ledger does not verify: {len(differences)} difference(s)",
                message="\n".join(differences[:ALERT_LINES]),
                details={"verification_run_id": run.pk, "differences": len(differences)},
            )
        else:
            note = f"verification run {run.pk} found the ledger clean"
            clear_alerts(key=VERIFY_KEY, note=note)
        clear_alerts(key=VERIFY_STALE_KEY, note=f"verification run {run.pk} ran")
    return run


def _finish(
    run: VerificationRun | ReconciliationRun, *, status: RunStatus, error: str = ""
) -> None:
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    run.save()


# --- reconciliation with Stripe -------------------------------------------------------


@dataclass
class Reconciliation:
    run: ReconciliationRun
    differences: list[Difference] = field(default_factory=list)


def day_bounds(period_start: date, period_end: date) -> tuple[datetime, datetime]:
    """Whole UTC days, both inclusive: [start of the first, start of the day after the last)."""
    since = datetime.combine(period_start, time.min, tzinfo=UTC)
    return since, datetime.combine(period_end + timedelta(days=1), time.min, tzinfo=UTC)


def reconcile_stripe(
    *,
    since: datetime,
    until: datetime,
    trigger: str = "command",
    progress: Progress | None = None,
) -> Reconciliation:
    """Compare the ledger's Stripe balance with Stripe's balance transactions over
    [since, until), keep the run and its differences, raise (or clear) its alert.

    Stripe is read outside any transaction; both sides are read with a margin of
    RECONCILE_MARGIN_HOURS around the period, so that a charge booked a moment after
    midnight still meets its balance transaction; only pairs touching the period count.
    If Stripe cannot be read, the run ends as `error` and a warning is raised."""
    if since >= until:
        raise InvalidInput(
            f"the period starts ({since:%Y-%m-%d %H:%M}) at or after it ends"
            f" ({until:%Y-%m-%d %H:%M})",
            fields={"from": ["not before to"]},
        )
    margin = timedelta(hours=settings.RECONCILE_MARGIN_HOURS)
    with transaction.atomic(), system_context():
        run = ReconciliationRun.objects.create(
            period_start=since, period_end=until, trigger=trigger
        )
    try:
        fetched = list(_stripe_items(since - margin, until + margin, progress=progress))
    except stripe.StripeError as exc:
        _reconciliation_failed(run, f"Stripe could not be read: {exc}")
        return Reconciliation(run=run)
    return _reconcile(
        run=run, fetched=fetched, since=since, until=until, margin=margin, progress=progress
    )


def _stripe_items(
    start: datetime, end: datetime, *, progress: Progress | None
) -> Iterable[tuple[str, StripeItem]]:
    """Stripe's balance transactions created in [start, end), a day at a time (that is the
    progress bar's unit: Stripe does not say how many there are), every page of each."""
    client = stripe_client()
    days = max(math.ceil((end - start) / timedelta(days=1)), 1)
    ignored = set(settings.RECONCILE_IGNORED_TYPES)
    for day in range(days):
        chunk_start = start + timedelta(days=day)
        chunk_end = min(chunk_start + timedelta(days=1), end)
        params = {
            "limit": STRIPE_PAGE_SIZE,
            "created": {"gte": int(chunk_start.timestamp()), "lt": int(chunk_end.timestamp())},
        }
        listing = client.v1.balance_transactions.list(params=params)  # type: ignore[arg-type]
        for remote in listing.auto_paging_iter():
            txn = as_dict(remote)
            if txn.get("type") in ignored:
                yield "", stripe_item(txn)  # counted as skipped
                continue
            if txn.get("type") == "transfer_refund":
                # The reversal's transfer is what pairs it with the payout that paid it.
                expanded = client.v1.balance_transactions.retrieve(
                    txn["id"], params={"expand": ["source"]}
                )
                txn = as_dict(expanded)
            item = stripe_item(txn)
            yield stripe_match_key(txn, item), item
        if progress:
            progress("stripe", day + 1, days)


@transaction.atomic
def _reconcile(
    *,
    run: ReconciliationRun,
    fetched: list[tuple[str, StripeItem]],
    since: datetime,
    until: datetime,
    margin: timedelta,
    progress: Progress | None,
) -> Reconciliation:
    with system_context():
        skipped = [item for key, item in fetched if not key and since <= item.created < until]
        stripe_items = [(key, item) for key, item in fetched if key]
        ledger = selectors.stripe_balance_postings(since=since - margin, until=until + margin)
        ledger += selectors.stripe_balance_postings_by_key(
            keys=_ledger_keys_for(key for key, _ in stripe_items)
        )
        unique: dict[str, LedgerItem] = {}
        for item in ledger:
            unique[f"{item.idempotency_key}|{item.currency}"] = item
        transfers = selectors.transfers_of_payouts(
            payout_ids=[i.payout_id for i in unique.values() if i.payout_id is not None]
        )
        ledger_items = [(ledger_match_key(i, transfers), i) for i in unique.values()]
        if progress:
            progress("ledger", 1, 1)
        result: Comparison = compare(
            stripe_items=stripe_items, ledger_items=ledger_items, since=since, until=until
        )
        ReconciliationDifference.objects.bulk_create(
            [_difference_row(run, d) for d in result.differences]
        )
        run.stripe_count = sum(1 for _, i in stripe_items if since <= i.created < until)
        run.ledger_count = sum(1 for _, i in ledger_items if since <= i.effective_at < until)
        run.matched_count = result.matched
        run.skipped_count = len(skipped)
        run.difference_count = len(result.differences)
        _finish(run, status=RunStatus.DIFFERENCES if result.differences else RunStatus.CLEAN)
        period_key = run.period_label
        if result.differences:
            raise_alert(
                key=f"reconciliation:{period_key}",
                severity=AlertSeverity.CRITICAL,
                title=(
                    f"Stripe reconciliation {period_key}: {len(result.differences)} difference(s)"
                ),
                message="\n".join(str(d) for d in result.differences[:ALERT_LINES]),
                details={"reconciliation_run_id": run.pk, "differences": len(result.differences)},
            )
        else:
            note = f"reconciliation run {run.pk} found no differences"
            clear_alerts(key=f"reconciliation:{period_key}", note=note)
        clear_alerts(key=f"reconciliation-error:{period_key}", note=f"run {run.pk} finished")
        if progress:
            progress("compare", 1, 1)
    return Reconciliation(run=run, differences=result.differences)


def _ledger_keys_for(match_keys: Iterable[str]) -> list[str]:
    """The idempotency keys of the postings that answer Stripe's items one to one (looked
    up whenever they are effective); transfer reversals are matched within the margin."""
    keys: list[str] = []
    transfers: list[str] = []
    for match_key in match_keys:
        prefix, _, rest = match_key.partition(":")
        if prefix in ("charge", "refund", "dispute"):
            keys.append(match_key)
        elif prefix == "refund_failure":
            keys.append(f"refund:{rest}:failed")
        elif prefix == "transfer":
            transfers.append(rest)
    payouts = selectors.payouts_of_transfers(transfer_ids=transfers)
    keys += [f"payout:{payout_id}:settle" for payout_id in payouts.values()]
    return keys


def _difference_row(run: ReconciliationRun, d: Difference) -> ReconciliationDifference:
    s, entry = d.stripe, d.ledger
    details: dict[str, Any] = {}
    if s is not None:
        details["stripe"] = {
            "type": s.type,
            "reporting_category": s.reporting_category,
            "source": s.source,
            "amount_cents": s.amount_cents,
            "fee_cents": s.fee_cents,
            "created": s.created.isoformat(),
        }
    if entry is not None:
        details["ledger"] = {"effective_at": entry.effective_at.isoformat()}
    return ReconciliationDifference(
        run=run,
        kind=d.kind,
        match_key=d.match_key[:255],
        stripe_transaction_id=s.transaction_id if s else "",
        stripe_type=s.type if s else "",
        stripe_net_cents=s.net_cents if s else None,
        stripe_currency=s.currency if s else "",
        ledger_idempotency_key=entry.idempotency_key if entry else "",
        ledger_net_cents=entry.net_cents if entry else None,
        ledger_currency=entry.currency if entry else "",
        occurred_at=d.occurred_at,
        details=details,
    )


@transaction.atomic
def _reconciliation_failed(run: ReconciliationRun, error: str) -> None:
    period_key = run.period_label
    with system_context():
        _finish(run, status=RunStatus.ERROR, error=error[:4000])
        raise_alert(
            key=f"reconciliation-error:{period_key}",
            severity=AlertSeverity.WARNING,
            title=f"Stripe reconciliation {period_key} could not run",
            message=error,
            details={"reconciliation_run_id": run.pk},
        )


# --- the periodic checks --------------------------------------------------------------


@dataclass
class CheckSummary:
    raised: list[str] = field(default_factory=list)  # keys of alerts opened by this run
    seen: list[str] = field(default_factory=list)  # keys of incidents still happening
    cleared: list[str] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def run_checks() -> CheckSummary:
    """Every MONITORING_CHECK_EVERY_MINUTES: raise or clear the incidents the checks see,
    and queue again the alerts that could not be sent. One failing check does not stop
    the others."""
    summary = CheckSummary()
    for name, check in (
        ("stuck_payouts", _check_stuck_payouts),
        ("failing_webhooks", _check_failing_webhooks),
        ("verification_stale", _check_verification_stale),
        ("redeliver", _requeue_undelivered),
    ):
        try:
            with transaction.atomic(), system_context():
                check(summary)
        except Exception as exc:  # one broken check must not silence the others
            logger.exception("monitoring check %s failed", name)
            summary.errors[name] = f"{type(exc).__name__}: {exc}"
    return summary


def _note(summary: CheckSummary, alert: Alert) -> None:
    (summary.raised if getattr(alert, "was_raised", False) else summary.seen).append(alert.key)


def _check_stuck_payouts(summary: CheckSummary) -> None:
    minutes = settings.MONITORING_PAYOUT_STUCK_MINUTES
    keys = []
    for payout in selectors.stuck_payouts():
        key = f"{PAYOUT_STUCK_PREFIX}{payout.payout_id}"
        keys.append(key)
        alert = raise_alert(
            key=key,
            severity=AlertSeverity.CRITICAL,
            title=(
                f"Payout {payout.payout_id} stuck {payout.status} for more than {minutes} minutes"
            ),
            message=(
                f"{format_money(payout.amount_cents, payout.currency)}, {payout.status} since"
                f" {payout.since:%Y-%m-%d %H:%M} UTC"
            ),
            details={
                "payout_id": payout.payout_id,
                "status": payout.status,
                "amount_cents": payout.amount_cents,
                "currency": payout.currency,
            },
        )
        _note(summary, alert)
    cleared = clear_alerts(
        prefix=PAYOUT_STUCK_PREFIX, still_open=keys, note="the payout is no longer stuck"
    )
    summary.cleared += [a.key for a in cleared]


def _check_failing_webhooks(summary: CheckSummary) -> None:
    keys = []
    for event in selectors.failing_webhook_events():
        key = f"{WEBHOOK_FAILING_PREFIX}{event.stripe_event_id}"
        keys.append(key)
        alert = raise_alert(
            key=key,
            severity=AlertSeverity.CRITICAL,
            title=(
                f"Stripe event {event.stripe_event_id} ({event.event_type}) failed"
                f" {event.attempts} times"
            ),
            message=event.last_error,
            details={"stripe_event_id": event.stripe_event_id, "attempts": event.attempts},
        )
        _note(summary, alert)
    cleared = clear_alerts(
        prefix=WEBHOOK_FAILING_PREFIX, still_open=keys, note="the event is processed or ignored"
    )
    summary.cleared += [a.key for a in cleared]


def _check_verification_stale(summary: CheckSummary) -> None:
    """A warning when the nightly verification has not run for MONITORING_VERIFY_STALE_HOURS
    (a stopped cluster, a failing job). Before the first run there is nothing to go stale."""
    last = selectors.last_verification()
    hours = settings.MONITORING_VERIFY_STALE_HOURS
    if last is None or last.started_at >= timezone.now() - timedelta(hours=hours):
        summary.cleared += [
            a.key for a in clear_alerts(key=VERIFY_STALE_KEY, note="a verification ran")
        ]
        return
    alert = raise_alert(
        key=VERIFY_STALE_KEY,
        severity=AlertSeverity.WARNING,
        title=f"The ledger has not been verified for more than {hours} hours",
        message=f"last verification: run {last.pk} at {last.started_at:%Y-%m-%d %H:%M} UTC",
        details={"verification_run_id": last.pk},
    )
    _note(summary, alert)


def _requeue_undelivered(summary: CheckSummary) -> None:
    for alert in selectors.undelivered_alerts(
        max_attempts=settings.MONITORING_ALERT_MAX_ATTEMPTS, lease=DELIVERY_LEASE
    ):
        if alert.notify_attempts == 0 and alert.first_seen_at > timezone.now() - DELIVERY_LEASE:
            continue  # just raised: its own delivery is on its way
        transaction.on_commit(partial(enqueue_delivery, alert_id=alert.pk))
        summary.requeued.append(alert.pk)


# --- the nightly jobs -----------------------------------------------------------------


def previous_day(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(UTC).date() - timedelta(days=1)
