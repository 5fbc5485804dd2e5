"""The analytics django-q2 schedules, created idempotently (migration 0003)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

REFRESH = "analytics: recompute changed days"
RECOMPUTE_YESTERDAY = "analytics: recompute yesterday and today"


def schedule_specs() -> dict[str, dict[str, Any]]:
    return {
        REFRESH: {
            "func": "analytics.tasks.refresh_analytics",
            "schedule_type": "I",  # every `minutes`
            "minutes": settings.ANALYTICS_REFRESH_EVERY_MINUTES,
            "repeats": -1,
        },
        # A safety net under the event-driven refresh: whatever the outbox missed (a handler
        # registered late, a dead delivery) is right again by the next morning.
        RECOMPUTE_YESTERDAY: {
            "func": "analytics.tasks.recompute_recent_days",
            "schedule_type": "D",
            "repeats": -1,
        },
    }


def ensure_schedules(schedule_model: Any, using: str) -> None:
    for name, spec in schedule_specs().items():
        schedule_model.objects.using(using).get_or_create(name=name, defaults=spec)


def remove_schedules(schedule_model: Any, using: str) -> None:
    schedule_model.objects.using(using).filter(name__in=list(schedule_specs())).delete()
