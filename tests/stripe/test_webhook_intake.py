"""The webhook's front door: only events signed with our secret, recently, get in; a refused
request leaves no row anywhere; every stored event is acknowledged, known type or not."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from django.test import Client
from djstripe.models import Event, WebhookEventTrigger

from treasury.rls import system_context
from treasury.stripe.models import EventStatus, StripeEventProcessing

from .conftest import WEBHOOK_PATH, deliver, signed_headers

pytestmark = pytest.mark.django_db


def an_event(event_type: str = "customer.created", **obj: Any) -> dict[str, Any]:
    object_id = obj.pop("id", f"cus_{uuid.uuid4().hex[:14]}")
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2026-08-26.dahlia",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": {"id": object_id, "object": event_type.split(".")[0], **obj}},
    }


def stored_counts() -> tuple[int, int, int]:
    with system_context():
        return (
            WebhookEventTrigger.objects.count(),
            Event.objects.count(),
            StripeEventProcessing.objects.count(),
        )


def assert_refused(response: Any, message_part: str) -> None:
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_webhook"
    assert message_part in error["message"]


def test_an_event_signed_with_another_secret_is_refused_and_nothing_is_stored(stripe_settings):
    before = stored_counts()
    response = deliver(Client(), an_event(), secret="whsec_someone_else")
    assert_refused(response, "does not verify")
    assert stored_counts() == before


def test_an_event_signed_too_long_ago_is_refused(stripe_settings):
    before = stored_counts()
    response = deliver(Client(), an_event(), at=int(time.time()) - 301)
    assert_refused(response, "tolerance")
    assert stored_counts() == before


def test_a_missing_signature_is_refused(stripe_settings):
    before = stored_counts()
    response = Client().post(
        WEBHOOK_PATH, data=json.dumps(an_event()), content_type="application/json"
    )
    assert_refused(response, "Stripe-Signature header is missing")
    assert response.json()["error"]["fields"] == {"Stripe-Signature": ["required"]}
    assert stored_counts() == before


def test_malformed_json_with_a_good_signature_is_refused(stripe_settings):
    before = stored_counts()
    response = deliver(Client(), '{"id": "evt_1", "object": "event", "type": ')
    assert_refused(response, "malformed JSON")
    assert stored_counts() == before


def test_json_that_is_not_an_event_is_refused(stripe_settings):
    before = stored_counts()
    response = deliver(Client(), json.dumps({"id": "cus_1", "object": "customer"}))
    assert_refused(response, "not a Stripe event")
    assert stored_counts() == before


def test_only_post_is_allowed(stripe_settings):
    assert Client().get(WEBHOOK_PATH).status_code == 405


def test_an_unknown_event_type_is_stored_acknowledged_and_ignored(stripe_settings):
    event = an_event("customer.created")
    response = deliver(Client(), event)
    assert response.status_code == 200
    assert response.json() == {
        "received": True,
        "event_id": event["id"],
        "type": "customer.created",
        "status": "ignored",
        "duplicate": False,
    }
    with system_context():
        processing = StripeEventProcessing.objects.get(stripe_event_id=event["id"])
        trigger = WebhookEventTrigger.objects.get(event__id=event["id"])
        assert Event.objects.get(id=event["id"]).type == "customer.created"
    assert processing.status == EventStatus.IGNORED
    assert processing.stripe_object_id == event["data"]["object"]["id"]
    assert (trigger.valid, trigger.processed) == (True, True)


def test_a_duplicate_delivery_is_acknowledged_and_not_processed_again(stripe_settings):
    event = an_event("customer.created")
    client = Client()
    assert deliver(client, event).json()["duplicate"] is False
    second = deliver(client, event)
    assert second.status_code == 200 and second.json()["duplicate"] is True
    with system_context():
        processing = StripeEventProcessing.objects.get(stripe_event_id=event["id"])
        assert WebhookEventTrigger.objects.filter(event__id=event["id"]).count() == 2
        assert Event.objects.filter(id=event["id"]).count() == 1
    assert processing.attempts == 1


def test_the_webhook_needs_no_token_and_ignores_one(stripe_settings, client_for, host):
    """Stripe sends no JWT; a token sent anyway changes nothing (the webhook runs as system)."""
    event = an_event("customer.created")
    payload = json.dumps(event)
    api = client_for(host)
    response = api.generic(
        "POST",
        WEBHOOK_PATH + "/",
        payload,
        content_type="application/json",
        headers=signed_headers(payload),
    )
    assert response.status_code == 200 and response.json()["status"] == "ignored"
