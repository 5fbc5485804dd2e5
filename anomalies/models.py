"""The seed's `anomalies`: what a detector flagged for a human to look at, and how it ended.

One open anomaly per fingerprint (`<detector>:<subject_type>:<subject_id>`), enforced by a
partial unique index, so a detector that runs every few minutes never floods the queue.
Only admins and the system see this table (row-level security, migrations/0002).
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class Severity(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# Review order: high first. Severity is ranked in SQL (selectors.review_queue).
SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3}


class SubjectType(models.TextChoices):
    USER = "user"
    TRANSACTION = "transaction"  # a ledger transaction
    PAYOUT = "payout"
    STRIPE_EVENT = "stripe_event"
    LEDGER = "ledger"  # an account or the books as a whole (verify_ledger)


class Anomaly(models.Model):
    id = models.BigAutoField(primary_key=True)
    detector = models.CharField(max_length=64, db_index=True)
    fingerprint = models.CharField(max_length=255)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    # How strongly the detector believes it (0..1 for the rules, the forest's anomaly score).
    # A judgement, never money.
    score = models.FloatField(default=0)
    subject_type = models.CharField(max_length=16, choices=SubjectType.choices)
    subject_id = models.CharField(max_length=255)
    # Whom it is about (the host, the recipient): payouts read their open anomalies.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="anomalies",
    )
    related_entry = models.ForeignKey(
        "ledger.LedgerEntry", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    description = models.TextField()
    # What drove the flag (the rule's numbers or the forest's features), shown to reviewers.
    features = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    # When the evidence happened (the latest charge, payout, failure); once resolved, the
    # same fingerprint is only raised again for newer evidence than the reviewer saw.
    observed_at = models.DateTimeField()
    flagged_at = models.DateTimeField(auto_now_add=True, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution_note = models.TextField(blank=True)

    class Meta:
        db_table = "anomalies"
        verbose_name_plural = "anomalies"
        ordering = ["-flagged_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=models.Q(resolved_at__isnull=True),
                name="anomalies_one_open_per_fingerprint",
            ),
            models.CheckConstraint(
                condition=models.Q(severity__in=Severity.values), name="anomalies_severity_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(subject_type__in=SubjectType.values),
                name="anomalies_subject_type_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(resolved_at__isnull=True) | ~models.Q(resolution_note=""),
                name="anomalies_resolution_has_note",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "resolved_at"]),
            models.Index(fields=["severity", "resolved_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.detector} {self.subject_type}:{self.subject_id} ({self.severity})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
