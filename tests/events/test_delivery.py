"""Delivery: at least once per handler, retried with backoff, never re-run once it
succeeded; handlers are idempotent, so replays change nothing they own."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from events.models import DeliveryStatus, EventDelivery
from events.services import deliver_events, retry_deliveries
from treasury.models import AuditLog
from treasury.rls import system_context

from .conftest import TEST_HANDLER, charge, delivery_of, event_of

pytestmark = pytest.mark.django_db


def make_due(delivery: EventDelivery) -> None:
    with system_context():
        EventDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def test_each_event_is_delivered_to_each_handler_once(host, recorder):
    posted = charge(host)

    deliver_events()

    event = event_of(posted)
    assert event.dispatched_at is not None
    assert recorder.calls.count(event.pk) == 1
    delivery = delivery_of(posted)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, 1)
    assert delivery.delivered_at is not None
    # Analytics listens to the same events, with its own delivery row.
    assert delivery_of(posted, "analytics.mark_changed_days").status == DeliveryStatus.SUCCEEDED

    deliver_events()  # a succeeded handler is not run again
    assert recorder.calls.count(event.pk) == 1


def test_a_failing_handler_is_retried_with_backoff_until_it_succeeds(host, recorder, settings):
    settings.EVENTS_RETRY_BASE_SECONDS = 60
    recorder.failures = 2
    posted = charge(host)
    event = event_of(posted)

    started = timezone.now()
    summary = deliver_events()

    delivery = delivery_of(posted)
    assert summary.failed >= 1
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert "downstream is unavailable" in delivery.last_error
    assert delivery.next_attempt_at >= started + timedelta(seconds=60)

    deliver_events()  # not due yet: not called
    assert recorder.calls.count(event.pk) == 1

    make_due(delivery)
    deliver_events()
    delivery = delivery_of(posted)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 2)
    # The wait doubles: 60s after the first failure, 120s after the second.
    assert delivery.next_attempt_at >= timezone.now() + timedelta(seconds=110)

    make_due(delivery)
    deliver_events()
    delivery = delivery_of(posted)
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        DeliveryStatus.SUCCEEDED,
        3,
        "",
    )
    assert recorder.calls.count(event.pk) == 3


def test_a_handlers_writes_are_rolled_back_when_it_fails(host, recorder):
    def write_then_fail(event):
        AuditLog.objects.create(
            action="tests.handler_side_effect", target_type="event", target_id=str(event.pk)
        )
        raise RuntimeError("failed after writing")

    from events import registry

    registry.register("tests.writer", event_types=["ledger.transaction_posted"])(write_then_fail)
    try:
        posted = charge(host)
        deliver_events()
    finally:
        registry.unregister("tests.writer")

    assert delivery_of(posted, "tests.writer").status == DeliveryStatus.FAILED
    with system_context():
        assert not AuditLog.objects.filter(action="tests.handler_side_effect").exists()


def test_after_the_last_attempt_a_delivery_is_dead_until_an_admin_retries_it(
    host, recorder, settings, admin_user
):
    settings.EVENTS_MAX_ATTEMPTS = 2
    recorder.failures = 5
    posted = charge(host)

    deliver_events()
    make_due(delivery_of(posted))
    deliver_events()
    delivery = delivery_of(posted)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DEAD, 2)
    make_due(delivery)
    deliver_events()  # dead: left alone
    assert delivery_of(posted).attempts == 2

    recorder.failures = 0
    assert retry_deliveries(actor=admin_user, delivery_ids=[delivery.pk]) == 1
    deliver_events()
    assert delivery_of(posted).status == DeliveryStatus.SUCCEEDED
    with system_context():
        assert AuditLog.objects.filter(
            action="events.delivery.retry", target_id=str(delivery.pk)
        ).exists()


def test_replay_calls_the_handlers_again_from_a_point_in_time(host, recorder, capsys):
    old = charge(host)
    deliver_events()
    since = timezone.now()
    new = charge(host)
    deliver_events()
    old_event, new_event = event_of(old), event_of(new)
    assert recorder.calls.count(new_event.pk) == 1

    call_command("replay_events", "--since", since.isoformat(), "--handler", TEST_HANDLER)

    assert recorder.calls.count(new_event.pk) == 2
    assert recorder.calls.count(old_event.pk) == 1  # before --since: not replayed
    delivery = delivery_of(new)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, 2)
    captured = capsys.readouterr()
    assert "replayed" in captured.err and "100%" in captured.err
    assert "succeeded, 0 failed" in captured.out


def test_replay_refuses_an_unknown_handler_or_a_bad_date(recorder):
    with pytest.raises(CommandError, match="no event handler named 'nope'"):
        call_command("replay_events", "--since", "2026-01-01T00:00:00Z", "--handler", "nope")
    with pytest.raises(CommandError, match="not an ISO 8601"):
        call_command("replay_events", "--since", "yesterday")
    with pytest.raises(CommandError, match="time zone"):
        call_command("replay_events", "--since", "2026-01-01T00:00:00")
