"""What the night watch keeps: reconciliation runs against Stripe and their differences,
ledger verification runs, and alerts (one open alert per incident key).

Only admins and the system see these tables (row-level security, migrations/0002).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


def period_label(since: datetime, until: datetime) -> str:
    """`2026-11-24..2026-11-24` for whole UTC days (the end inclusive), else both instants."""
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    if since.time() == until.time() == time.min:
        return f"{since.date().isoformat()}..{(until - timedelta(days=1)).date().isoformat()}"
    return f"{since.isoformat()}..{until.isoformat()}"


class RunStatus(models.TextChoices):
    RUNNING = "running"
    CLEAN = "clean"
    DIFFERENCES = "differences"
    ERROR = "error"  # the run could not finish (Stripe unreachable, a crash)


class ReconciliationRun(models.Model):
    """One comparison of the ledger's Stripe balance with Stripe's balance transactions over
    [period_start, period_end) (the command and the nightly job reconcile whole UTC days)."""

    id = models.BigAutoField(primary_key=True)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    trigger = models.CharField(max_length=32, default="command")  # command, schedule
    stripe_count = models.PositiveIntegerField(default=0)  # balance transactions compared
    ledger_count = models.PositiveIntegerField(default=0)  # postings compared
    matched_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)  # types outside the ledger's scope
    difference_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "monitoring_reconciliation_runs"
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=RunStatus.values),
                name="monitoring_reconciliation_runs_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(period_start__lt=models.F("period_end")),
                name="monitoring_reconciliation_runs_period_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"reconciliation {self.period_label} ({self.status})"

    @property
    def period_label(self) -> str:
        return period_label(self.period_start, self.period_end)


class DifferenceKind(models.TextChoices):
    MISSING_IN_LEDGER = "missing_in_ledger"  # Stripe moved money the ledger never booked
    EXTRA_IN_LEDGER = "extra_in_ledger"  # the ledger booked a move Stripe does not have
    AMOUNT_MISMATCH = "amount_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"


class ReconciliationDifference(models.Model):
    """One disagreement. Amounts are the net movement of the Stripe balance in minor units
    (Stripe's `net`; the ledger's debits less credits on stripe_balance), each side with its
    own currency."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="differences")
    kind = models.CharField(max_length=24, choices=DifferenceKind.choices)
    match_key = models.CharField(max_length=255)  # e.g. charge:ch_123, transfer:tr_456
    stripe_transaction_id = models.CharField(max_length=255, blank=True)
    stripe_type = models.CharField(max_length=64, blank=True)
    stripe_net_cents = models.BigIntegerField(null=True, blank=True)
    stripe_currency = models.CharField(max_length=3, blank=True)
    ledger_idempotency_key = models.CharField(max_length=255, blank=True)
    ledger_net_cents = models.BigIntegerField(null=True, blank=True)
    ledger_currency = models.CharField(max_length=3, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        db_table = "monitoring_reconciliation_differences"
        ordering = ["run_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=DifferenceKind.values),
                name="monitoring_reconciliation_differences_kind_valid",
            ),
        ]

    def __str__(self) -> str:
        stripe_side = (
            f"stripe {self.stripe_net_cents} {self.stripe_currency} ({self.stripe_transaction_id})"
            if self.stripe_transaction_id
            else "stripe: none"
        )
        ledger_side = (
            f"ledger {self.ledger_net_cents} {self.ledger_currency} ({self.ledger_idempotency_key})"
            if self.ledger_idempotency_key
            else "ledger: none"
        )
        return f"{self.kind}: {self.match_key}: {stripe_side}; {ledger_side}"


class VerificationRun(models.Model):
    """One `verify_ledger` pass (the nightly job's or a manual one): the dashboard and the
    admin show the last."""

    id = models.BigAutoField(primary_key=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    trigger = models.CharField(max_length=32, default="command")
    difference_count = models.PositiveIntegerField(default=0)
    # The first differences as verify_ledger prints them (capped: a broken ledger can have
    # millions; the command lists them all).
    differences = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "monitoring_verification_runs"
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=RunStatus.values),
                name="monitoring_verification_runs_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"verification {self.started_at:%Y-%m-%d %H:%M} ({self.status})"


class AlertSeverity(models.TextChoices):
    CRITICAL = "critical"  # Slack
    WARNING = "warning"  # the ops mailing list


class Alert(models.Model):
    """One incident, however often a check sees it: a stable key (`payout-stuck:42`), first
    and last seen, how many times. PostgreSQL keeps one open alert per key (a partial unique
    index), so concurrent checks cannot raise it twice; it is sent once, after commit."""

    id = models.BigAutoField(primary_key=True)
    key = models.CharField(max_length=255)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices)
    title = models.CharField(max_length=255)
    message = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)
    # Delivery (Slack or mail): a claim leases the send to one worker; notified once sent.
    notified_at = models.DateTimeField(null=True, blank=True)
    notify_attempts = models.PositiveIntegerField(default=0)
    notify_claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution_note = models.TextField(blank=True)

    class Meta:
        db_table = "alerts"
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"],
                condition=models.Q(resolved_at__isnull=True),
                name="alerts_one_open_per_key",
            ),
            models.CheckConstraint(
                condition=models.Q(severity__in=AlertSeverity.values),
                name="alerts_severity_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(resolved_at__isnull=True) | ~models.Q(resolution_note=""),
                name="alerts_resolution_has_note",
            ),
        ]
        indexes = [
            models.Index(fields=["resolved_at", "severity"]),
            models.Index(fields=["key"]),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.key}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
