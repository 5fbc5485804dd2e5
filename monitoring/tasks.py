"""django-q2 jobs: thin wrappers around services (scheduled by monitoring/schedules.py)."""

from __future__ import annotations

from typing import Any

from monitoring import services


def deliver_alert(alert_id: int) -> bool:
    """Queued after an alert is raised: send it once. A failed send raises, and django-q2
    runs the task again (Q_CLUSTER retry / max_attempts)."""
    return services.deliver_alert(alert_id=alert_id)


def run_checks() -> dict[str, Any]:
    """Every few minutes: stuck payouts, failing webhooks, a stale verification; unsent
    alerts are queued again."""
    summary = services.run_checks()
    return {
        "raised": summary.raised,
        "seen": len(summary.seen),
        "cleared": summary.cleared,
        "requeued": summary.requeued,
        "errors": summary.errors,
    }


def verify_ledger() -> dict[str, Any]:
    """Nightly: verify_ledger, kept as a run; differences raise the critical alert."""
    run, differences = services.verify_ledger(trigger="schedule")
    return {"run": run.pk, "status": run.status, "differences": len(differences)}


def reconcile_previous_day() -> dict[str, Any]:
    """Nightly: the ledger against Stripe's balance transactions for yesterday (UTC)."""
    day = services.previous_day()
    since, until = services.day_bounds(day, day)
    result = services.reconcile_stripe(since=since, until=until, trigger="schedule")
    return {
        "run": result.run.pk,
        "status": result.run.status,
        "differences": result.run.difference_count,
    }
