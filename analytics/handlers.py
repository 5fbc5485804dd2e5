"""The analytics module's event handlers (registered by AnalyticsConfig.ready)."""

from __future__ import annotations

from datetime import UTC

from django.utils.dateparse import parse_datetime

from analytics import services
from events.models import Event
from events.registry import register
from events.services import LEDGER_TRANSACTION_POSTED

MARK_CHANGED_DAYS = "analytics.mark_changed_days"


@register(MARK_CHANGED_DAYS, event_types=[LEDGER_TRANSACTION_POSTED])
def mark_changed_days(event: Event) -> None:
    """A posting changed its day's figures in each currency it touched. Idempotent: a
    mark is a flag, and recomputing a day twice gives the same rows."""
    effective_at = parse_datetime(str(event.payload["effective_at"]))
    if effective_at is None:
        raise ValueError(f"event #{event.pk}: effective_at is not a date and time")
    day = effective_at.astimezone(UTC).date()
    currencies = {amount["currency"] for amount in event.payload.get("amounts", [])}
    services.mark_changed_days(days={(day, currency) for currency in currencies})
