"""django-q2 jobs: thin wrappers around services (scheduled by anomalies/schedules.py)."""

from __future__ import annotations

from typing import Any

from anomalies import forest, services
from treasury.rls import system_context


def run_detectors() -> dict[str, Any]:
    """Every few minutes: every rule and the forest over the recent window."""
    summary = services.run_detectors()
    return {"found": summary.found, "created": len(summary.created), "errors": summary.errors}


def train_forest() -> dict[str, Any]:
    """Daily: retrain each kind's isolation forest on the recent history."""
    trained = {}
    for kind in forest.KINDS:
        with system_context():
            model = forest.train_forest(kind=kind)
        trained[kind] = model.metadata["samples"] if model else 0
    return trained
