"""django-q2 jobs: thin wrappers around services (scheduled by payouts/schedules.py)."""

from __future__ import annotations

from payouts import services


def run_scheduled_payouts() -> dict[str, int]:
    """Nightly: one payout per recipient and currency above the minimum."""
    return services.run_scheduled_payouts()


def resume_payouts() -> int:
    """Every few minutes: finish the Stripe steps a crash or an outage left undone."""
    return services.resume_payouts()
