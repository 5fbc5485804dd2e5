"""The outbox: one row per money change, written in the same database transaction.

`events` is append-only for what happened (type, subject, payload, time): PostgreSQL refuses
any other change, DELETE and TRUNCATE (migration 0002). Only `dispatched_at` is written later,
once the event's deliveries exist. Each handler's delivery of each event is one
`event_deliveries` row: a handler that succeeded is not run again, one that failed is retried
with backoff, and the admin shows both.
"""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class Event(models.Model):
    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=100)
    # What the event is about, e.g. `ledger_transaction:42`.
    subject = models.CharField(max_length=255)
    payload = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set once a delivery row exists for every handler registered for the type.
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "events"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["type", "created_at"]),
            models.Index(fields=["created_at"]),
            models.Index(fields=["subject"]),
            # The dispatcher's queue: only the few events not fanned out yet.
            models.Index(
                fields=["id"],
                condition=models.Q(dispatched_at__isnull=True),
                name="events_undispatched",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.type} {self.subject}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # will be retried at next_attempt_at
    DEAD = "dead"  # gave up after EVENTS_MAX_ATTEMPTS; the admin may retry it


class EventDelivery(models.Model):
    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="deliveries")
    handler = models.CharField(max_length=100)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "event_deliveries"
        ordering = ["-id"]
        verbose_name_plural = "event deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "handler"], name="event_deliveries_once"),
            models.CheckConstraint(
                condition=models.Q(status__in=DeliveryStatus.values),
                name="event_deliveries_status_valid",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at", "id"],
                condition=models.Q(status__in=["pending", "failed"]),
                name="event_deliveries_due",
            ),
            models.Index(fields=["handler", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.handler} <- event #{self.event_id} ({self.status})"
