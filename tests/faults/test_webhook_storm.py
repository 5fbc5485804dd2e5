"""A webhook storm: 1,000 Stripe events, each delivered three times, shuffled, by eight
concurrent senders over real HTTP. Each object is processed once, the ledger verifies.

500 buyers pay through the Stripe stand-in (each payment: `payment_intent.succeeded` and
`charge.succeeded`), with the stand-in holding its own deliveries; the test then sends all
3,000 deliveries itself, in a seeded random order, eight at a time, to the app served by a
pooled WSGI server with real commits.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connection

from ledger.chart import user_code
from ledger.models import LedgerTransaction
from ledger.selectors import account_balance, ledger_differences
from tests.factories import ArtistFactory, HostFactory
from tests.stripe import conftest as stripe_fixtures
from tests.stripe.conftest import WEBHOOK_PATH, LiveApp, control, signed_headers, split_rule
from tests.stripe.test_live_webhooks import _held_events
from treasury.rls import system_context
from treasury.stripe.models import EventStatus, StripeCharge, StripeEventProcessing

# The stand-in, the app over HTTP and their settings, as tests/stripe uses them.
stripe_standin = stripe_fixtures.stripe_standin
stripe_settings = stripe_fixtures.stripe_settings
stripe_api = stripe_fixtures.stripe_api
live_app = stripe_fixtures.live_app

PAYMENTS = 500
DELIVERIES = 3
SENDERS = 8


def send(app: LiveApp, payload: str) -> tuple[int, Any]:
    try:
        return app.post(WEBHOOK_PATH, payload, signed_headers(payload))
    finally:
        connection.close()  # this sender thread's connection, if it opened one


def test_a_storm_of_3000_shuffled_deliveries_processes_each_object_once(
    live_app: LiveApp, stripe_settings: Any, stripe_api: Any
):
    host, artist = HostFactory(), ArtistFactory()
    rule = split_rule(owner=host, recipients=[(host, 7000), (artist, 3000)])
    rng = random.Random(20261125)
    control(stripe_settings, "/_standin/hold", {"hold": True})  # we deliver, not the stand-in
    charge_ids = [
        control(
            stripe_settings,
            "/_standin/charges",
            {
                "amount": rng.randint(100, 50000),
                "currency": "usd",
                "metadata": {"split_rule_id": rule.pk},
            },
        )["latest_charge"]["id"]
        for _ in range(PAYMENTS)
    ]
    events = _held_events(stripe_api, set(charge_ids))
    assert len(events) == 1000
    deliveries = [json.dumps(event) for event in events for _ in range(DELIVERIES)]
    rng.shuffle(deliveries)

    with ThreadPoolExecutor(max_workers=SENDERS) as senders:
        answers = list(senders.map(lambda payload: send(live_app, payload), deliveries))

    assert Counter(status for status, _ in answers) == {200: len(deliveries)}
    first_times: Counter[str] = Counter()
    for payload, (_, answer) in zip(deliveries, answers, strict=True):
        if not answer["duplicate"]:
            first_times[json.loads(payload)["id"]] += 1
    assert first_times == {event["id"]: 1 for event in events}  # processed once per event

    with system_context():
        processing = StripeEventProcessing.objects.filter(
            stripe_event_id__in=[event["id"] for event in events]
        )
        assert {(p.status, p.attempts) for p in processing} == {(EventStatus.PROCESSED, 1)}
        assert processing.count() == len(events)
        # One posting per charge, whichever of its events arrived first.
        keys = [f"charge:{charge_id}" for charge_id in charge_ids]
        assert LedgerTransaction.objects.filter(idempotency_key__in=keys).count() == PAYMENTS
        records = list(StripeCharge.objects.filter(stripe_charge_id__in=charge_ids))
        assert len(records) == PAYMENTS
        allocated: dict[str, int] = defaultdict(int)
        for record in records:
            for share in record.allocation["recipients"]:
                allocated[share["recipient_id"]] += share["amount_cents"]
        for user in (host, artist):
            payable = account_balance(code=user_code(user.pk, "payable", "USD"))
            assert payable == allocated[str(user.pk)] > 0
        assert list(ledger_differences()) == []
