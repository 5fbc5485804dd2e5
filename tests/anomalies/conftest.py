from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from anomalies.findings import Finding
from anomalies.models import Anomaly, Severity, SubjectType
from anomalies.services import record_findings
from anomalies.synthetic import SyntheticBooks
from treasury.models import Role

# `owner` is named so that pytest-django creates the owner's test database, which `default`
# mirrors: with `default` alone no test database is set up and `default` stays pointed at the
# development database (see tests/payouts/conftest.py).
DB = pytest.mark.django_db(databases=["default", "owner"])

# The detectors judge [SINCE, UNTIL); history lies before it. Far from "now", so committed
# rows of other tests never fall in the window (the split-rule test uses "now" on purpose).
SINCE = datetime(2031, 3, 10, tzinfo=UTC)
UNTIL = SINCE + timedelta(hours=24)


@pytest.fixture(autouse=True)
def test_database_only(request: pytest.FixtureRequest) -> None:
    """The detectors read everyone's books: never let them judge a development database."""
    if request.node.get_closest_marker("django_db"):
        name = connections["default"].settings_dict["NAME"]
        assert name.startswith("test_"), f"refusing to run against {name!r}"


@pytest.fixture(autouse=True)
def forest_storage(settings: Any, tmp_path: Path) -> Path:
    """Models of each test in its own folder (the default storage, local)."""
    folder = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }
    return folder


@pytest.fixture
def books(db: None) -> SyntheticBooks:
    return SyntheticBooks()


@pytest.fixture
def make_host(books: SyntheticBooks) -> Any:
    def make() -> Any:
        return books.user(role=Role.HOST, created_at=SINCE - timedelta(days=365))

    return make


@pytest.fixture
def make_buyer(books: SyntheticBooks) -> Any:
    def make() -> Any:
        return books.user(role=Role.BUYER)

    return make


def flagged(findings: list[Finding]) -> set[str]:
    return {f"{f.subject_type}:{f.subject_id}" for f in findings}


@pytest.fixture
def make_anomaly(db: None) -> Any:
    counter = iter(range(1, 10_000))

    def make(
        *,
        detector: str = "duplicate_charge",
        severity: Severity = Severity.MEDIUM,
        score: float = 0.5,
        user: Any = None,
        subject_id: str | None = None,
    ) -> Anomaly:
        finding = Finding(
            detector=detector,
            subject_type=SubjectType.TRANSACTION,
            subject_id=subject_id or f"t{next(counter)}-{timezone.now().timestamp()}",
            severity=severity,
            score=score,
            description=f"{detector} test finding",
            observed_at=timezone.now(),
            features={"amount_cents": 1234, "minutes_apart": 2.0},
            user_id=user.pk if user else None,
        )
        [anomaly] = record_findings(findings=[finding])
        return anomaly

    return make
