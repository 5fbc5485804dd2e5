"""The django-q2 jobs and their schedules."""

from __future__ import annotations

from django_q.models import Schedule

from anomalies import tasks
from anomalies.schedules import RUN_DETECTORS, TRAIN_FOREST
from tests.anomalies.conftest import DB

pytestmark = DB


def test_the_detectors_and_the_daily_training_are_scheduled():
    schedules = dict(
        Schedule.objects.filter(name__in=[RUN_DETECTORS, TRAIN_FOREST]).values_list("name", "func")
    )
    assert schedules == {
        RUN_DETECTORS: "anomalies.tasks.run_detectors",
        TRAIN_FOREST: "anomalies.tasks.train_forest",
    }


def test_the_jobs_run_every_detector_and_train_each_kind(forest_storage):
    result = tasks.run_detectors()
    assert result["errors"] == {}
    assert set(result["found"]) >= {"duplicate_charge", "ledger_difference", "isolation_forest"}
    assert set(tasks.train_forest()) == {"charge", "payout"}
