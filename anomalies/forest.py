"""The isolation forest: features per charge and per payout, training, persistence, scoring.

Two models, one per kind of subject (`charge`: a booked charge's ledger transaction;
`payout`: a payout reservation), trained by the daily job on the last
ANOMALIES_FOREST_TRAIN_DAYS, with `random_state` = ANOMALIES_FOREST_SEED so the same history
gives the same model and the same scores. A model is stored through the default storage
(S3 in production) as joblib bytes with a JSON sidecar of its training metadata, and a
`<kind>-latest.json` pointer the scorer reads. Features are floats: they describe money, they
never compute it.
"""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import joblib
import numpy as np
import sklearn
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from sklearn.ensemble import IsolationForest

from anomalies.detectors import (
    _rows,
    charges_between,
    detector,
    payouts_between,
    refunds_between,
)
from anomalies.findings import Finding
from anomalies.models import Severity, SubjectType
from treasury.money_format import format_money

KINDS = ("charge", "payout")
CHARGE_FEATURES = (
    "log_amount",
    "amount_vs_history",
    "hour_sin",
    "hour_cos",
    "counterparties",
    "refund_ratio",
    "account_age_days",
    "velocity_24h",
)
PAYOUT_FEATURES = (
    "log_amount",
    "amount_vs_history",
    "hour_sin",
    "hour_cos",
    "refund_ratio",
    "account_age_days",
    "velocity_24h",
)
FEATURES = {"charge": CHARGE_FEATURES, "payout": PAYOUT_FEATURES}


@dataclass(frozen=True)
class Sample:
    """One subject's features (in FEATURES[kind] order) and what a finding needs."""

    kind: str
    subject_id: str
    at: datetime
    user_id: str | None
    entry_id: int | None
    amount_cents: int
    currency: str
    values: tuple[float, ...]

    def as_dict(self) -> dict[str, float]:
        return {
            name: round(value, 4)
            for name, value in zip(FEATURES[self.kind], self.values, strict=True)
        }


def _hour_features(at: datetime) -> tuple[float, float]:
    hour = at.astimezone(UTC).hour + at.minute / 60
    return math.sin(2 * math.pi * hour / 24), math.cos(2 * math.pi * hour / 24)


def _account_created(user_ids: set[str]) -> dict[str, datetime]:
    if not user_ids:
        return {}
    rows = _rows(
        "SELECT id::text, created_at FROM users WHERE id::text = ANY(%s)", [list(user_ids)]
    )
    return dict(rows)


def _age_days(at: datetime, created: datetime | None) -> float:
    if created is None:
        return 0.0
    return math.log1p(max(0.0, (at - created).total_seconds() / 86400))


def _refund_ratios(start: datetime, until: datetime) -> dict[str, float]:
    charges: dict[str, int] = defaultdict(int)
    refunds: dict[str, int] = defaultdict(int)
    for charge in charges_between(start, until):
        if charge.host_id:
            charges[charge.host_id] += 1
    for _, _, host_id in refunds_between(start, until):
        if host_id:
            refunds[host_id] += 1
    return {host: refunds[host] / max(count, 1) for host, count in charges.items()}


def charge_samples(*, since: datetime, until: datetime) -> list[Sample]:
    """Features of the charges booked in [since, until), each against the host's history
    (the ANOMALIES_HISTORY_DAYS before it)."""
    start = since - timedelta(days=settings.ANOMALIES_HISTORY_DAYS)
    charges = charges_between(start, until)
    if not charges:
        return []
    ids = [c.transaction_id for c in charges if c.at >= since]
    counterparties = dict(
        _rows(
            "SELECT transaction_id, count(DISTINCT user_id) FROM ledger_entries"
            " WHERE transaction_id = ANY(%s) AND type = 'credit' AND user_id IS NOT NULL"
            " GROUP BY transaction_id",
            [ids],
        )
    )
    ratios = _refund_ratios(start, until)
    created = _account_created({c.host_id for c in charges if c.host_id})
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # cents, count
    recent: dict[str, deque[datetime]] = defaultdict(deque)
    samples = []
    for charge in charges:
        host = charge.host_id or ""
        history = totals[(host, charge.currency)]
        window = recent[host]
        while window and charge.at - window[0] > timedelta(hours=24):
            window.popleft()
        if charge.at >= since:
            average = history[0] / history[1] if history[1] else float(charge.gross_cents)
            samples.append(
                Sample(
                    kind="charge",
                    subject_id=str(charge.transaction_id),
                    at=charge.at,
                    user_id=charge.host_id,
                    entry_id=charge.entry_id,
                    amount_cents=charge.gross_cents,
                    currency=charge.currency,
                    values=(
                        math.log1p(charge.gross_cents),
                        charge.gross_cents / max(average, 1.0),
                        *_hour_features(charge.at),
                        float(counterparties.get(charge.transaction_id, 0)),
                        ratios.get(host, 0.0),
                        _age_days(charge.at, created.get(host)),
                        float(len(window)),
                    ),
                )
            )
        history[0] += charge.gross_cents
        history[1] += 1
        window.append(charge.at)
    return samples


def payout_samples(*, since: datetime, until: datetime) -> list[Sample]:
    """Features of the payouts reserved in [since, until), against the recipient's history."""
    start = since - timedelta(days=settings.ANOMALIES_HISTORY_DAYS)
    payouts = payouts_between(start, until)
    if not payouts:
        return []
    ratios = _refund_ratios(start, until)
    created = _account_created({p.user_id for p in payouts})
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    recent: dict[str, deque[datetime]] = defaultdict(deque)
    samples = []
    for payout in payouts:
        history = totals[(payout.user_id, payout.currency)]
        window = recent[payout.user_id]
        while window and payout.at - window[0] > timedelta(hours=24):
            window.popleft()
        if payout.at >= since:
            average = history[0] / history[1] if history[1] else float(payout.amount_cents)
            samples.append(
                Sample(
                    kind="payout",
                    subject_id=payout.payout_id,
                    at=payout.at,
                    user_id=payout.user_id,
                    entry_id=payout.entry_id,
                    amount_cents=payout.amount_cents,
                    currency=payout.currency,
                    values=(
                        math.log1p(payout.amount_cents),
                        payout.amount_cents / max(average, 1.0),
                        *_hour_features(payout.at),
                        ratios.get(payout.user_id, 0.0),
                        _age_days(payout.at, created.get(payout.user_id)),
                        float(len(window)),
                    ),
                )
            )
        history[0] += payout.amount_cents
        history[1] += 1
        window.append(payout.at)
    return samples


SAMPLERS = {"charge": charge_samples, "payout": payout_samples}


# --- training and persistence ---


@dataclass(frozen=True)
class TrainedForest:
    kind: str
    model: IsolationForest
    metadata: dict[str, Any]


def _prefix() -> str:
    return f"{settings.ANOMALIES_FOREST_STORAGE_PREFIX}/forest"


def _matrix(samples: list[Sample]) -> np.ndarray:
    return np.array([s.values for s in samples], dtype=float)


def fit_forest(samples: list[Sample], *, seed: int) -> IsolationForest:
    model = IsolationForest(
        n_estimators=settings.ANOMALIES_FOREST_TREES, random_state=seed, contamination="auto"
    )
    return model.fit(_matrix(samples))


def train_forest(
    *, kind: str, until: datetime | None = None, seed: int | None = None
) -> TrainedForest | None:
    """Train on the recent history and store the model; None when there is too little of it
    (the previous model, if any, stays in use)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    until = until or timezone.now()
    seed = settings.ANOMALIES_FOREST_SEED if seed is None else seed
    since = until - timedelta(days=settings.ANOMALIES_FOREST_TRAIN_DAYS)
    samples = SAMPLERS[kind](since=since, until=until)
    if len(samples) < settings.ANOMALIES_FOREST_MIN_SAMPLES:
        return None
    model = fit_forest(samples, seed=seed)
    stamp = until.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    scores = -model.score_samples(_matrix(samples))
    metadata = {
        "kind": kind,
        "trained_at": timezone.now().isoformat(),
        "history_since": since.isoformat(),
        "history_until": until.isoformat(),
        "samples": len(samples),
        "features": list(FEATURES[kind]),
        "seed": seed,
        "trees": settings.ANOMALIES_FOREST_TREES,
        "threshold": settings.ANOMALIES_FOREST_THRESHOLD,
        "training_flag_rate": float(np.mean(scores >= settings.ANOMALIES_FOREST_THRESHOLD)),
        "sklearn_version": sklearn.__version__,
    }
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    model_path = default_storage.save(
        f"{_prefix()}/{kind}-{stamp}.joblib", ContentFile(buffer.getvalue())
    )
    metadata["model_path"] = model_path
    body = json.dumps(metadata, indent=2, sort_keys=True).encode()
    default_storage.save(f"{_prefix()}/{kind}-{stamp}.json", ContentFile(body))
    latest = f"{_prefix()}/{kind}-latest.json"
    if default_storage.exists(latest):
        default_storage.delete(latest)
    default_storage.save(latest, ContentFile(body))
    return TrainedForest(kind=kind, model=model, metadata=metadata)


def load_forest(*, kind: str) -> TrainedForest | None:
    """The latest stored model of `kind`, or None before the first training."""
    latest = f"{_prefix()}/{kind}-latest.json"
    if not default_storage.exists(latest):
        return None
    with default_storage.open(latest) as handle:
        metadata = json.loads(handle.read())
    with default_storage.open(metadata["model_path"]) as handle:
        # Our own file, written by train_forest through our storage.
        model = joblib.load(io.BytesIO(handle.read()))
    return TrainedForest(kind=kind, model=model, metadata=metadata)


def score_samples(forest: TrainedForest, samples: list[Sample]) -> list[float]:
    """The forest's anomaly score per sample (0..1; about 0.5 is ordinary, near 1 isolated)."""
    if not samples:
        return []
    return [float(s) for s in -forest.model.score_samples(_matrix(samples))]


def findings_for(
    forest: TrainedForest, samples: list[Sample], *, threshold: float | None = None
) -> list[Finding]:
    threshold = settings.ANOMALIES_FOREST_THRESHOLD if threshold is None else threshold
    findings = []
    for sample, score in zip(samples, score_samples(forest, samples), strict=True):
        if score < threshold:
            continue
        subject = SubjectType.TRANSACTION if sample.kind == "charge" else SubjectType.PAYOUT
        findings.append(
            Finding(
                detector="isolation_forest",
                subject_type=subject,
                subject_id=sample.subject_id,
                severity=Severity.MEDIUM if score >= threshold + 0.1 else Severity.LOW,
                score=round(score, 4),
                description=(
                    f"unusual {sample.kind} of {format_money(sample.amount_cents, sample.currency)}"
                    f" (isolation forest score {score:.2f} >= {threshold:.2f})"
                ),
                observed_at=sample.at,
                features={
                    **sample.as_dict(),
                    "model": forest.metadata.get("model_path", ""),
                    "kind": sample.kind,
                },
                user_id=sample.user_id,
                related_entry_id=sample.entry_id,
            )
        )
    return findings


@detector("isolation_forest")
def detect_with_forest(*, since: datetime, until: datetime) -> list[Finding]:
    """Score what was posted in the window with the latest stored models (none yet: nothing)."""
    findings: list[Finding] = []
    for kind in KINDS:
        forest = load_forest(kind=kind)
        if forest is not None:
            findings += findings_for(forest, SAMPLERS[kind](since=since, until=until))
    return findings
