"""django-q2 jobs for refunds: thin wrappers around services.

Scheduled by migration 0003 (every REFUNDS_RESUME_EVERY_MINUTES): `resume_refunds`. Dispute
events whose charge could not be booked yet are retried by the webhook intake's own job
(`treasury.stripe.tasks.retry_failed_events`).
"""

from __future__ import annotations

from disputes import services


def resume_refunds() -> int:
    """Send refunds Stripe never answered; retry transfer reversals left pending."""
    return services.resume_refunds()
