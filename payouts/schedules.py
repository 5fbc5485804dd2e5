"""The django-q2 schedules of the payouts app, created idempotently by migration 0003 and
brought in line with the settings by `manage.py setup_payout_schedules`."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

NIGHTLY = "payouts: nightly run"
RESUME = "payouts: resume unfinished"


def nightly_time() -> time:
    try:
        hours, minutes = (int(part) for part in settings.PAYOUTS_NIGHTLY_AT.split(":"))
        return time(hours, minutes)
    except ValueError as exc:
        raise ValueError(
            f"PAYOUTS_NIGHTLY_AT must be HH:MM (UTC), not {settings.PAYOUTS_NIGHTLY_AT!r}"
        ) from exc


def next_nightly_run(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    at = datetime.combine(now.date(), nightly_time(), tzinfo=now.tzinfo)
    return at if at > now else at + timedelta(days=1)


def ensure_schedules(schedule_model: Any, using: str = "default") -> None:
    """Create or update both schedules (django_q's Schedule model, real or historical)."""
    rows = schedule_model.objects.using(using)
    rows.update_or_create(
        name=NIGHTLY,
        defaults={
            "func": "payouts.tasks.run_scheduled_payouts",
            "schedule_type": "D",  # daily, from next_run
            "next_run": next_nightly_run(),
            "repeats": -1,
        },
    )
    rows.update_or_create(
        name=RESUME,
        defaults={
            "func": "payouts.tasks.resume_payouts",
            "schedule_type": "I",  # every `minutes`
            "minutes": settings.PAYOUTS_RESUME_EVERY_MINUTES,
            "repeats": -1,
        },
    )


def remove_schedules(schedule_model: Any, using: str = "default") -> None:
    schedule_model.objects.using(using).filter(name__in=[NIGHTLY, RESUME]).delete()
