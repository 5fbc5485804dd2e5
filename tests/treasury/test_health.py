from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django_q.status import Stat

# The job cluster's heartbeat lives in the shared cache: these tests run on one xdist worker.
pytestmark = [pytest.mark.django_db, pytest.mark.xdist_group("job_cluster")]


@pytest.fixture
def no_job_cluster():
    cache.clear()


@pytest.fixture
def job_cluster():
    """A real `manage.py qcluster` on the test database, stopped after the test."""
    cache.clear()
    env = {**os.environ, "TREASURY_DATABASE_NAME": connections["default"].settings_dict["NAME"]}
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not Stat.get_all() and time.monotonic() < deadline:
        time.sleep(0.25)
    yield cluster
    cluster.send_signal(signal.SIGTERM)
    cluster.wait(timeout=30)
    cache.clear()


def test_public_health_is_minimal_and_503_without_a_job_cluster(api_client, no_job_cluster):
    response = api_client.get("/api/admin/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["error"]["code"] == "unhealthy"
    assert "checks" not in body


def test_admin_sees_each_check(client_for, admin_user, no_job_cluster):
    body = client_for(admin_user).get("/api/admin/health/").json()
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["pending_migrations"] == []
    assert body["checks"]["database"]["latency_ms"] >= 0
    assert body["checks"]["jobs"]["ok"] is False
    assert "jobs" in body["error"]["message"]


def test_health_is_ok_with_a_running_job_cluster(api_client, client_for, admin_user, job_cluster):
    response = api_client.get("/api/admin/health")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok"}
    jobs = client_for(admin_user).get("/api/admin/health").json()["checks"]["jobs"]
    assert jobs["ok"] is True
    assert jobs["clusters"][0]["workers"] >= 1
