"""Reads of the review queue (admins and the system: row-level security hides the rest)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db.models import Case, F, IntegerField, QuerySet, Value, When

from anomalies.models import SEVERITY_RANK, Anomaly
from treasury.rls import system_context


def review_queue(
    *,
    severity: str | None = None,
    detector: str | None = None,
    resolved: bool | None = None,
    on: date | None = None,
    flagged_from: datetime | None = None,
    flagged_to: datetime | None = None,
) -> QuerySet[Anomaly]:
    """Anomalies, most severe and highest scored first (open before resolved)."""
    rows = Anomaly.objects.select_related("user", "resolved_by").annotate(
        severity_rank=Case(
            *[When(severity=name, then=Value(rank)) for name, rank in SEVERITY_RANK.items()],
            default=Value(0),
            output_field=IntegerField(),
        )
    )
    if severity:
        rows = rows.filter(severity=severity)
    if detector:
        rows = rows.filter(detector=detector)
    if resolved is not None:
        rows = rows.filter(resolved_at__isnull=not resolved)
    if on is not None:
        rows = rows.filter(flagged_at__date=on)
    if flagged_from is not None:
        rows = rows.filter(flagged_at__gte=flagged_from)
    if flagged_to is not None:
        rows = rows.filter(flagged_at__lt=flagged_to)
    return rows.order_by(
        F("resolved_at").asc(nulls_first=True), "-severity_rank", "-score", "-flagged_at", "-id"
    )


def open_anomalies_for(*, user: Any) -> QuerySet[Anomaly]:
    """The open anomalies about a user (read as the system: payouts' risk check calls it)."""
    return Anomaly.objects.filter(user_id=user.pk, resolved_at__isnull=True)


def open_anomaly_count(*, user: Any) -> int:
    """What payouts/risk.py's `open_anomalies` check reads (its `open_anomalies_hook`)."""
    with system_context():
        return open_anomalies_for(user=user).count()
