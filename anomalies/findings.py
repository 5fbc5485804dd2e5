"""What a detector returns: a finding, before it is recorded as an anomaly."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from anomalies.models import Severity, SubjectType


@dataclass(frozen=True)
class Finding:
    detector: str
    subject_type: SubjectType
    subject_id: str
    severity: Severity
    score: float
    description: str
    observed_at: datetime
    features: dict[str, Any] = field(default_factory=dict)
    user_id: Any = None
    related_entry_id: int | None = None

    @property
    def fingerprint(self) -> str:
        return f"{self.detector}:{self.subject_type}:{self.subject_id}"
