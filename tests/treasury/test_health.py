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

pytestmark = pytest.mark.django_db


@pytest.fixture
def private_cache(settings, tmp_path):
    """A cache of this test's own: the heartbeat of no other cluster can leak in."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    return tmp_path / "cache"


@pytest.fixture
def no_job_cluster(private_cache):
    cache.clear()


@pytest.fixture
def job_cluster(private_cache):
    """A real `manage.py qcluster` on the test database, stopped after the test."""
    env = {
        **os.environ,
        "TREASURY_DATABASE_NAME": connections["default"].settings_dict["NAME"],
        "TREASURY_CACHE_DIR": str(private_cache),
    }
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not Stat.get_all() and time.monotonic() < deadline:
        time.sleep(0.25)
    yield cluster
    cluster.send_signal(signal.SIGTERM)
    cluster.wait(timeout=60)


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
