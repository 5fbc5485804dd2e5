"""django-q2 jobs for reports: thin wrappers around services.

`generate_report` is queued by services.request_report and retry_report once their
transaction commits. It runs in the system context (each step opens its own).
"""

from __future__ import annotations

from typing import Any

from reporting import services


def generate_report(report_id: int) -> dict[str, Any]:
    """Generate one report; returns its outcome for django-q2's task record."""
    report = services.run_report(report_id=report_id)
    if report is None:
        return {"report_id": report_id, "status": "missing"}
    return {"report_id": report.pk, "status": report.status, "error": report.error}
