"""Jobs: outbox handlers that talk to the outside world (Stripe, mail) run outside any
transaction, leased while they run, retried with backoff until they are done; the nudge
right after a commit may be lost or fail without harm; the mail is console by default."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from events import registry
from events import services as events_services
from events.models import DeliveryStatus, EventDelivery
from events.services import (
    JOB_LEASE,
    deliver_after_commit,
    deliver_events,
    record_event,
)
from treasury.rls import system_context

from .conftest import Recorder

pytestmark = pytest.mark.django_db

JOB = "tests.job"
JOB_EVENT = "tests.job_requested"


@pytest.fixture
def job() -> Iterator[Recorder]:
    handler = Recorder()
    registry.register(JOB, event_types=[JOB_EVENT], atomic=False)(handler)
    yield handler
    registry.unregister(JOB)


def new_event() -> int:
    with system_context():
        return record_event(type=JOB_EVENT, subject="tests:1", payload={"n": 1})


def delivery(event_id: int) -> EventDelivery:
    with system_context():
        return EventDelivery.objects.get(event_id=event_id, handler=JOB)


def test_a_job_runs_once_and_is_marked_done(job):
    event_id = new_event()

    deliver_events()
    deliver_events()

    assert job.calls == [event_id]
    done = delivery(event_id)
    assert (done.status, done.attempts, done.last_error) == (DeliveryStatus.SUCCEEDED, 1, "")


def test_a_failing_job_is_retried_with_backoff_until_it_succeeds(job, settings):
    settings.EVENTS_RETRY_BASE_SECONDS = 60
    job.failures = 1
    event_id = new_event()

    deliver_events()
    failed = delivery(event_id)
    assert (failed.status, failed.attempts) == (DeliveryStatus.FAILED, 1)
    assert "downstream is unavailable" in failed.last_error
    assert (failed.next_attempt_at - timezone.now()).total_seconds() > 50
    deliver_events()  # not due yet
    assert job.calls == [event_id]

    with system_context():
        EventDelivery.objects.filter(pk=failed.pk).update(next_attempt_at=timezone.now())
    deliver_events()
    assert job.calls == [event_id, event_id]
    assert delivery(event_id).status == DeliveryStatus.SUCCEEDED


def test_a_job_whose_worker_died_is_run_again_once_its_lease_is_over(job):
    """A worker claimed the job and died before recording how it ended."""
    event_id = new_event()
    events_services.dispatch_events()
    with system_context():
        row = EventDelivery.objects.select_related("event").get(event_id=event_id, handler=JOB)
        events_services._claim(row, registry.handler_named(JOB))
    claimed = delivery(event_id)
    assert claimed.status == DeliveryStatus.PENDING and claimed.attempts == 1
    assert claimed.next_attempt_at >= timezone.now() + JOB_LEASE - timedelta(seconds=5)

    deliver_events()  # leased: nobody else takes it meanwhile
    assert job.calls == []

    with system_context():
        EventDelivery.objects.filter(pk=claimed.pk).update(next_attempt_at=timezone.now())
    deliver_events()
    assert job.calls == [event_id]
    assert (delivery(event_id).status, delivery(event_id).attempts) == ("succeeded", 2)


def test_the_nudge_after_commit_runs_the_job_and_never_raises(
    job, django_capture_on_commit_callbacks, monkeypatch
):
    job.failures = 1
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        event_id = new_event()
        deliver_after_commit(event_id=event_id)
    # A plain function: Django 5.2 names it when it logs a failing robust callback.
    assert [callback.__qualname__ for callback in callbacks] == [
        "deliver_after_commit.<locals>.deliver_now"
    ]
    assert job.calls == [event_id]
    assert delivery(event_id).status == DeliveryStatus.FAILED  # left to the worker

    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(events_services, "deliver_event", broken)
    with django_capture_on_commit_callbacks(execute=True):
        deliver_after_commit(event_id=event_id)  # logged, not raised


@pytest.mark.parametrize(
    ("environment", "backend"),
    [
        ({}, "django.core.mail.backends.console.EmailBackend"),
        ({"EMAIL_HOST": "smtp.example.test"}, "django.core.mail.backends.smtp.EmailBackend"),
        (
            {"EMAIL_URL": "smtp+tls://ops:secret@smtp.example.test:587"},
            "django.core.mail.backends.smtp.EmailBackend",
        ),
    ],
)
def test_mail_goes_to_the_console_unless_a_mail_server_is_configured(environment, backend):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("EMAIL_") and key != "DJANGO_SETTINGS_MODULE"
    }
    # A database URL that is never connected to: reading settings starts no PostgreSQL.
    env.update(
        environment,
        DJANGO_SETTINGS_MODULE="treasury.settings",
        DATABASE_URL="postgres://nobody@127.0.0.1:9/none",
    )
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s;"
            " print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS)",
        ],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert shown[0] == backend
    if "EMAIL_URL" in environment:
        assert shown[1:] == ["smtp.example.test", "587", "True"]
