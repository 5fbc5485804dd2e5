"""Every write of the anomalies module: recording findings, resolving them, alerting."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from anomalies import forest  # noqa: F401  (registers the isolation_forest detector)
from anomalies.detectors import DETECTORS
from anomalies.findings import Finding
from anomalies.models import Anomaly, Severity
from treasury.errors import Conflict, Forbidden, InvalidInput, NotFound
from treasury.models import User
from treasury.rls import system_context
from treasury.services import record_audit, snapshot

logger = logging.getLogger(__name__)

# Detectors whose every finding is a critical failure (DESIGN "Alerts").
ALERTING_DETECTORS = frozenset({"ledger_difference", "webhook_failures"})


@dataclass
class RunSummary:
    found: dict[str, int] = field(default_factory=dict)
    created: list[Anomaly] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


@transaction.atomic
def record_findings(*, findings: Iterable[Finding]) -> list[Anomaly]:
    """Record findings as anomalies, idempotently: a fingerprint with an open anomaly is not
    recorded again, nor one already resolved with evidence at least as recent (the reviewer
    saw it). Returns the anomalies created; the high-severity ones of the alerting detectors
    are alerted after commit."""
    created: list[Anomaly] = []
    with system_context():
        for finding in findings:
            if _already_known(finding):
                continue
            try:
                with transaction.atomic():  # a concurrent run may have recorded it first
                    anomaly = Anomaly.objects.create(
                        detector=finding.detector,
                        fingerprint=finding.fingerprint,
                        severity=finding.severity,
                        score=finding.score,
                        subject_type=finding.subject_type,
                        subject_id=finding.subject_id,
                        user_id=finding.user_id,
                        related_entry_id=finding.related_entry_id,
                        description=finding.description,
                        features=finding.features,
                        observed_at=finding.observed_at,
                    )
            except IntegrityError:
                continue
            created.append(anomaly)
    alerts = [
        a for a in created if a.severity == Severity.HIGH and a.detector in ALERTING_DETECTORS
    ]
    for anomaly in alerts:
        raise_anomaly_alert(anomaly=anomaly)
    return created


def raise_anomaly_alert(*, anomaly: Anomaly) -> None:
    """A critical finding is an incident of monitoring's (one alert per incident, sent once
    after commit): the same incident the nightly verification or the webhook check raises,
    so a broken ledger or a failing event is one message whoever sees it first."""
    from monitoring.models import AlertSeverity
    from monitoring.services import VERIFY_KEY, WEBHOOK_FAILING_PREFIX, raise_alert

    key = (
        VERIFY_KEY
        if anomaly.detector == "ledger_difference"
        else f"{WEBHOOK_FAILING_PREFIX}{anomaly.subject_id}"
    )
    raise_alert(
        key=key,
        severity=AlertSeverity.CRITICAL,
        title=f"anomaly {anomaly.detector}: {anomaly.description}"[:255],
        message=f"[{anomaly.severity}] {anomaly.detector}: {anomaly.description}",
        details={"anomaly_id": anomaly.pk, "detector": anomaly.detector},
    )


def _already_known(finding: Finding) -> bool:
    return Anomaly.objects.filter(
        Q(resolved_at__isnull=True) | Q(observed_at__gte=finding.observed_at),
        fingerprint=finding.fingerprint,
    ).exists()


def run_detectors(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    names: Sequence[str] | None = None,
) -> RunSummary:
    """Run the detectors over [since, until) (default: the last ANOMALIES_WINDOW_HOURS) and
    record what they find. A detector that fails is logged and skipped, not fatal: the
    others still run."""
    until = until or timezone.now()
    since = since or until - timedelta(hours=settings.ANOMALIES_WINDOW_HOURS)
    summary = RunSummary()
    for name in names or list(DETECTORS):
        if name not in DETECTORS:
            raise InvalidInput(f"unknown detector {name!r}", fields={"detector": ["unknown"]})
        try:
            with transaction.atomic(), system_context():
                findings = DETECTORS[name](since=since, until=until)
                summary.created += record_findings(findings=findings)
        except Exception as exc:  # one broken detector must not silence the others
            logger.exception("anomaly detector %s failed", name)
            summary.errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        summary.found[name] = len(findings)
    return summary


@transaction.atomic
def resolve_anomaly(*, anomaly_id: int, actor: User, note: str) -> Anomaly:
    """Close an anomaly with the reviewer's note (audited). Unknown: 404; already resolved:
    409; an empty note: 400."""
    if not getattr(actor, "is_admin", False):
        raise Forbidden("only admins may resolve anomalies")
    note = (note or "").strip()
    if not note:
        raise InvalidInput("a resolution note is required", fields={"note": ["required"]})
    with system_context():
        anomaly = Anomaly.objects.select_for_update().filter(pk=anomaly_id).first()
        if anomaly is None:
            raise NotFound(f"no anomaly {anomaly_id}", fields={"id": ["not found"]})
        if anomaly.resolved_at is not None:
            raise Conflict(
                f"anomaly {anomaly_id} was already resolved"
                f" at {anomaly.resolved_at:%Y-%m-%d %H:%M}",
                fields={"id": ["already resolved"]},
            )
        before = snapshot(anomaly)
        anomaly.resolved_at = timezone.now()
        anomaly.resolved_by = actor
        anomaly.resolution_note = note
        anomaly.save(update_fields=["resolved_at", "resolved_by", "resolution_note"])
        record_audit(
            actor=actor,
            action="anomaly.resolve",
            target=anomaly,
            before=before,
            after=snapshot(anomaly),
            details={"note": note},
        )
    return anomaly


# --- alerts (sent after commit, never inside a locked section) ---
