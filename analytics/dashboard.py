"""What the admin's index page shows above the app list (treasury/admin_site.py)."""

from __future__ import annotations

from typing import Any

from django.urls import NoReverseMatch, reverse

from analytics import selectors
from anomalies.selectors import review_queue
from events.selectors import failing_deliveries
from monitoring.models import RunStatus
from monitoring.selectors import last_verification
from treasury.replica import replica_reads
from treasury.stripe.selectors import events_needing_attention

DASHBOARD_DAYS = 90


def _admin_url(name: str, query: str = "") -> str:
    try:
        return reverse(f"admin:{name}") + query
    except NoReverseMatch:
        return ""


def dashboard_context(*, user: Any) -> dict[str, Any]:
    """Charts of the platform's daily figures per currency (the last 90 days; the page
    toggles to 30) from the analytics aggregates, and the ops counters beside them."""
    with replica_reads(user=user):
        series = selectors.platform_series(days=DASHBOARD_DAYS)
    verification = last_verification()
    return {
        "series": series.as_json(),
        "open_anomalies": review_queue(resolved=False).count(),
        "anomalies_url": _admin_url("anomalies_anomaly_changelist", "?resolved_at__isnull=True"),
        "webhook_failures": events_needing_attention().count(),
        "webhook_failures_url": _admin_url(
            "treasury_stripeeventprocessing_changelist", "?status__exact=failed"
        ),
        "event_delivery_failures": failing_deliveries().count(),
        "event_deliveries_url": _admin_url(
            "events_eventdelivery_changelist", "?status__in=failed,dead"
        ),
        "verification": (
            {
                "ok": verification.status == RunStatus.CLEAN,
                "difference_count": verification.difference_count,
                "finished_at": verification.finished_at,
            }
            if verification is not None
            else None
        ),
        "verifications_url": _admin_url("monitoring_verificationrun_changelist"),
    }
