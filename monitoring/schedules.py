"""The monitoring app's django-q2 schedules, created idempotently by migration 0003 and
brought in line with the settings by `manage.py setup_monitoring_schedules`."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

VERIFY = "monitoring: nightly ledger verification"
RECONCILE = "monitoring: nightly Stripe reconciliation"
CHECKS = "monitoring: checks and alerts"
NAMES = (VERIFY, RECONCILE, CHECKS)
# Reconciliation starts a little after verification, so the two do not share the night's
# first minutes with the payout run and each other.
RECONCILE_AFTER = timedelta(minutes=30)


def nightly_time() -> time:
    try:
        hours, minutes = (int(part) for part in settings.MONITORING_NIGHTLY_AT.split(":"))
        return time(hours, minutes)
    except ValueError as exc:
        raise ValueError(
            f"MONITORING_NIGHTLY_AT must be HH:MM (UTC), not {settings.MONITORING_NIGHTLY_AT!r}"
        ) from exc


def next_run_at(at: time, now: datetime | None = None, after: timedelta = timedelta(0)) -> datetime:
    now = now or timezone.now()
    run = datetime.combine(now.date(), at, tzinfo=now.tzinfo) + after
    return run if run > now else run + timedelta(days=1)


def ensure_schedules(schedule_model: Any, using: str = "default") -> None:
    """Create or update the three schedules (django_q's Schedule model, real or historical)."""
    rows = schedule_model.objects.using(using)
    at = nightly_time()
    rows.update_or_create(
        name=VERIFY,
        defaults={
            "func": "monitoring.tasks.verify_ledger",
            "schedule_type": "D",  # daily, from next_run
            "next_run": next_run_at(at),
            "repeats": -1,
        },
    )
    rows.update_or_create(
        name=RECONCILE,
        defaults={
            "func": "monitoring.tasks.reconcile_previous_day",
            "schedule_type": "D",
            "next_run": next_run_at(at, after=RECONCILE_AFTER),
            "repeats": -1,
        },
    )
    rows.update_or_create(
        name=CHECKS,
        defaults={
            "func": "monitoring.tasks.run_checks",
            "schedule_type": "I",  # every `minutes`
            "minutes": settings.MONITORING_CHECK_EVERY_MINUTES,
            "repeats": -1,
        },
    )


def remove_schedules(schedule_model: Any, using: str = "default") -> None:
    schedule_model.objects.using(using).filter(name__in=NAMES).delete()
