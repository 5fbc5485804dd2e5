"""Reads of the daily aggregates, for the API and the admin dashboard.

Callers evaluate these under `treasury.replica.replica_reads(user=...)`: on the replica
when one is configured, with the reader's row-level security context there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, timedelta
from typing import Any
from uuid import UUID

from django.db.models import QuerySet
from django.utils import timezone

from analytics.models import DailyAggregate
from treasury.errors import NotFound

FIGURES = [
    "gross_volume_cents",
    "platform_fee_cents",
    "refunds_cents",
    "disputes_cents",
    "payouts_cents",
    "charge_count",
]


def daily_aggregates(
    *,
    viewer: Any,
    user_id: UUID | None = None,
    per_user: bool = False,
    currency: str | None = None,
    day_from: date | None = None,
    day_to: date | None = None,
) -> QuerySet[DailyAggregate]:
    """Admins: the platform's totals, every user's rows (`per_user`) or one user's.
    Hosts and artists: their own rows only; another user's id is a 404."""
    rows = DailyAggregate.objects.all()
    if getattr(viewer, "is_admin", False):
        if user_id is not None:
            rows = rows.filter(user_id=user_id)
        elif per_user:
            rows = rows.filter(user__isnull=False)
        else:
            rows = rows.filter(user__isnull=True)
    else:
        if user_id is not None and user_id != viewer.pk:
            raise NotFound(f"user {user_id} not found")
        rows = rows.filter(user_id=viewer.pk)
    if currency:
        rows = rows.filter(currency=currency)
    if day_from:
        rows = rows.filter(day__gte=day_from)
    if day_to:
        rows = rows.filter(day__lte=day_to)
    return rows.order_by("-day", "currency", "user_id")


@dataclass(frozen=True)
class ChartSeries:
    days: list[str]
    # currency -> figure -> one value per day (0 where nothing was booked)
    currencies: dict[str, dict[str, list[int]]]

    def as_json(self) -> dict[str, Any]:
        return {"days": self.days, "currencies": self.currencies}


def platform_series(*, days: int = 90, today: date | None = None) -> ChartSeries:
    """The platform's daily figures per currency over the last `days` days, for charts."""
    today = today or timezone.now().astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    labels = [(first + timedelta(days=n)).isoformat() for n in range(days)]
    index = {label: n for n, label in enumerate(labels)}
    currencies: dict[str, dict[str, list[int]]] = {}
    rows = DailyAggregate.objects.filter(user__isnull=True, day__gte=first, day__lte=today)
    for row in rows.order_by("currency", "day"):
        series = currencies.setdefault(row.currency, {f: [0] * days for f in FIGURES})
        for figure in FIGURES:
            series[figure][index[row.day.isoformat()]] = getattr(row, figure)
    return ChartSeries(days=labels, currencies=currencies)
