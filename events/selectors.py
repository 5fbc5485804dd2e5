"""Reads of the outbox (system and admin only: row-level security hides it from others)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from events.models import DeliveryStatus, Event, EventDelivery


def events_since(*, since: datetime, event_type: str | None = None) -> QuerySet[Event]:
    rows = Event.objects.filter(created_at__gte=since)
    if event_type:
        rows = rows.filter(type=event_type)
    return rows.order_by("id")


def events_about(*, subject: str) -> QuerySet[Event]:
    return Event.objects.filter(subject=subject).order_by("id")


def failing_deliveries() -> QuerySet[EventDelivery]:
    """Deliveries that failed and have not succeeded since (dead ones included)."""
    return EventDelivery.objects.filter(
        status__in=[DeliveryStatus.FAILED, DeliveryStatus.DEAD]
    ).order_by("next_attempt_at", "id")


def undelivered_count() -> int:
    """Events not fanned out yet plus deliveries still to run: the outbox's backlog."""
    return (
        Event.objects.filter(dispatched_at__isnull=True).count()
        + EventDelivery.objects.exclude(status=DeliveryStatus.SUCCEEDED).count()
    )
