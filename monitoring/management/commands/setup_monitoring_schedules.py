from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django_q.models import Schedule

from monitoring.schedules import NAMES, ensure_schedules


class Command(BaseCommand):
    help = "Create or update the monitoring django-q2 schedules from the settings (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_schedules(Schedule)
        for row in Schedule.objects.filter(name__in=NAMES).order_by("name"):
            self.stdout.write(f"{row.name}: {row.func} next {row.next_run:%Y-%m-%d %H:%M} UTC")
