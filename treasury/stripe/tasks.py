"""django-q2 jobs for Stripe: thin wrappers around services.

Scheduled by migration 0005 (every 5 minutes): `retry_failed_events`.
"""

from __future__ import annotations

from treasury.stripe import services


def retry_failed_events() -> int:
    """Retry events whose handler failed (attempts below STRIPE_EVENT_MAX_ATTEMPTS)."""
    return services.retry_failed_events()
