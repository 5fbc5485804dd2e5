"""django-q2 jobs: thin wrappers around services (scheduled by analytics/schedules.py)."""

from __future__ import annotations

from analytics import services


def refresh_analytics() -> int:
    """Every few minutes: recompute the days whose postings changed."""
    return services.refresh_analytics()


def recompute_recent_days() -> int:
    """Daily: recompute yesterday and today whatever the outbox said."""
    return services.recompute_recent_days()
