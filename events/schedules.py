"""The outbox's django-q2 schedule, created idempotently (migration 0003)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DELIVER_EVENTS = "events: deliver outbox"


def schedule_specs() -> dict[str, dict[str, Any]]:
    return {
        DELIVER_EVENTS: {
            "func": "events.tasks.deliver_events",
            "schedule_type": "I",  # every `minutes`
            "minutes": settings.EVENTS_DELIVER_EVERY_MINUTES,
            "repeats": -1,
        },
    }


def ensure_schedules(schedule_model: Any, using: str) -> None:
    for name, spec in schedule_specs().items():
        schedule_model.objects.using(using).get_or_create(name=name, defaults=spec)


def remove_schedules(schedule_model: Any, using: str) -> None:
    schedule_model.objects.using(using).filter(name__in=list(schedule_specs())).delete()
