"""The anomalies module's django-q2 schedules, created idempotently (migration 0003)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

RUN_DETECTORS = "anomalies: run detectors"
TRAIN_FOREST = "anomalies: train isolation forest"


def schedule_specs() -> dict[str, dict[str, Any]]:
    return {
        RUN_DETECTORS: {
            "func": "anomalies.tasks.run_detectors",
            "schedule_type": "I",  # every `minutes`
            "minutes": settings.ANOMALIES_RUN_EVERY_MINUTES,
            "repeats": -1,
        },
        TRAIN_FOREST: {
            "func": "anomalies.tasks.train_forest",
            "schedule_type": "D",  # daily
            "repeats": -1,
        },
    }


def ensure_schedules(schedule_model: Any, using: str) -> None:
    for name, spec in schedule_specs().items():
        schedule_model.objects.using(using).get_or_create(name=name, defaults=spec)


def remove_schedules(schedule_model: Any, using: str) -> None:
    schedule_model.objects.using(using).filter(name__in=list(schedule_specs())).delete()
