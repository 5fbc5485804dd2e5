"""django-q2 jobs: thin wrappers around services (scheduled by events/schedules.py)."""

from __future__ import annotations

from typing import Any

from events import services


def deliver_events() -> dict[str, Any]:
    """Every minute: fan out new events, run due deliveries and retries."""
    return services.deliver_events().as_json()
