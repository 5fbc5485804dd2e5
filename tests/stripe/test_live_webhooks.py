"""The whole path over real HTTP: the stand-in sends signed webhooks to the app served by a
threaded WSGI server, with real commits, as Stripe would in production. These tests use
fresh users and unique ids, and assert on their own rows only."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection

from disputes.models import Refund
from ledger.chart import user_code
from ledger.models import LedgerTransaction
from ledger.selectors import account_balance, ledger_differences
from tests.factories import AdminFactory, ArtistFactory, HostFactory, UserFactory
from treasury.api import token_pair
from treasury.models import AuditLog
from treasury.rls import system_context
from treasury.stripe.models import EventStatus, StripeAccount, StripeCharge, StripeEventProcessing

from .conftest import WEBHOOK_PATH, LiveApp, control, signed_headers, split_rule, wait_until

STORM_CHARGES = 200


def bearer(user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_pair(user)['access']}"}


def onboarding_status(user: Any) -> str | None:
    with system_context():
        return (
            StripeAccount.objects.filter(user_id=user.pk)
            .values_list("onboarding_status", flat=True)
            .first()
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_onboarding_completes_through_the_account_link_and_the_webhook(live_app: LiveApp):
    host = HostFactory()
    status, body = live_app.post("/api/stripe/accounts/onboard", "", bearer(host))
    assert status == 201 and body["onboarding_status"] == "pending"

    # The host follows the link; Stripe finishes onboarding, redirects back, and tells us.
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(body["url"], timeout=10)
    assert redirect.value.code == 302

    assert wait_until(lambda: onboarding_status(host) == "completed")
    with system_context():
        audit = AuditLog.objects.get(action="stripe.account.completed", target_id=str(host.pk))
        processing = StripeEventProcessing.objects.get(
            event_type="account.updated", stripe_object_id=body["stripe_account_id"]
        )
    assert audit.after["charges_enabled"] is True
    assert processing.status == EventStatus.PROCESSED
    status, me = live_app.post("/api/stripe/accounts/onboard", "", bearer(host))
    assert (status, me["url"], me["onboarding_status"]) == (200, None, "completed")


def test_a_demo_charge_is_booked_when_stripes_webhook_arrives(live_app: LiveApp):
    host, artist, buyer, admin = HostFactory(), ArtistFactory(), UserFactory(), AdminFactory()
    split_rule(owner=host, recipients=[(host, 8000), (artist, 2000)], is_default=True)
    payload = json.dumps(
        {
            "buyer_id": str(buyer.pk),
            "host_id": str(host.pk),
            "amount_cents": 5000,
            "currency": "usd",
        }
    )
    status, result = live_app.post("/api/stripe/demo-charges", payload, bearer(admin))
    assert status == 201, result

    def booked() -> bool:
        with system_context():
            return StripeCharge.objects.filter(stripe_charge_id=result["charge_id"]).exists()

    assert wait_until(booked)
    with system_context():
        charge = StripeCharge.objects.get(stripe_charge_id=result["charge_id"])
        host_payable = account_balance(code=user_code(host.pk, "payable", "USD"))
        artist_payable = account_balance(code=user_code(artist.pk, "payable", "USD"))
    assert (charge.buyer_id, charge.host_id) == (buyer.pk, host.pk)
    assert (host_payable, artist_payable) == (3600, 900)  # 5000 - 10% = 4500, split 80/20


def test_eight_simultaneous_deliveries_of_one_event_post_once(
    live_app: LiveApp, stripe_settings: Any, stripe_api: Any
):
    host = HostFactory()
    stripe_settings.configure_webhook(None, None)  # only our eight deliveries
    intent = control(
        stripe_settings,
        "/_standin/charges",
        {"amount": 4321, "currency": "usd", "metadata": {"host_id": str(host.pk)}},
    )
    charge_id = intent["latest_charge"]["id"]
    event = next(
        e.to_dict()
        for e in stripe_api.v1.events.list(params={"type": "charge.succeeded"}).data
        if e.data.object.id == charge_id
    )
    start = threading.Barrier(8)

    def deliver_together(_: int) -> tuple[int, Any]:
        start.wait()
        return _send(live_app, event)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(deliver_together, range(8)))

    assert [status for status, _ in answers] == [200] * 8
    assert sorted(answer["duplicate"] for _, answer in answers) == [False] + [True] * 7
    with system_context():
        assert LedgerTransaction.objects.filter(idempotency_key=f"charge:{charge_id}").count() == 1
        processing = StripeEventProcessing.objects.get(stripe_event_id=event["id"])
    assert (processing.status, processing.attempts) == (EventStatus.PROCESSED, 1)


def test_a_storm_of_shuffled_duplicated_concurrent_deliveries_books_each_charge_once(
    live_app: LiveApp, stripe_settings: Any, stripe_api: Any
):
    """200 charges, their events held, then released shuffled with every event sent three
    times by the stand-in while a pool of four threads sends each once more: 1,600 deliveries
    of 400 events, two of them racing at any moment. One charge is refunded and its
    charge.refunded delivered before anything else."""
    started = time.monotonic()
    host, artist = HostFactory(), ArtistFactory()
    rule = split_rule(owner=host, recipients=[(host, 7000), (artist, 3000)])
    rng = random.Random(20261125)
    control(stripe_settings, "/_standin/hold", {"hold": True})
    charge_ids = []
    for _ in range(STORM_CHARGES):
        amount_cents = rng.randint(100, 50000)
        intent = control(
            stripe_settings,
            "/_standin/charges",
            {"amount": amount_cents, "currency": "usd", "metadata": {"split_rule_id": rule.pk}},
        )
        charge_ids.append(intent["latest_charge"]["id"])
    refunded = charge_ids[0]
    stripe_api.v1.refunds.create(params={"charge": refunded, "amount": 50})
    events = _held_events(stripe_api, set(charge_ids))
    assert len(events) == 2 * STORM_CHARGES + 3  # + refund.created, charge.refunded, .updated

    refund_first = next(
        e
        for e in events
        if e["type"] == "charge.refunded" and e["data"]["object"]["id"] == refunded
    )
    status, answer = _send(live_app, refund_first)
    assert (status, answer["status"]) == (200, "processed")

    released = control(
        stripe_settings, "/_standin/release", {"order": "shuffle", "seed": 7, "duplicates": 3}
    )["released"]
    assert released == 3 * len(events)
    ours = list(events)
    rng.shuffle(ours)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda event: _send(live_app, event), ours))
    assert {status for status, _ in answers} == {200}
    assert stripe_settings.wait_for_webhooks(timeout=120)

    with system_context():
        postings = LedgerTransaction.objects.filter(
            idempotency_key__in=[f"charge:{charge_id}" for charge_id in charge_ids]
        )
        assert postings.count() == STORM_CHARGES
        assert list(ledger_differences()) == []
        records = list(StripeCharge.objects.filter(stripe_charge_id__in=charge_ids))
        assert len(records) == STORM_CHARGES
        allocated: dict[str, int] = defaultdict(int)
        for record in records:
            for share in record.allocation["recipients"]:
                allocated[share["recipient_id"]] += share["amount_cents"]
        # The one refund (50 cents) unwinds its pro-rata part of that charge's split, once.
        refund = Refund.objects.get(charge__stripe_charge_id=refunded)
        assert (refund.status, refund.amount_cents) == ("succeeded", 50)
        taken = refund.split["recipients"]
        assert refund.split["platform_fee_cents"] + sum(taken.values()) == 50
        for user in (host, artist):
            payable = account_balance(code=user_code(user.pk, "payable", "USD"))
            assert payable == allocated[str(user.pk)] - taken[str(user.pk)] > 0
        statuses = set(
            StripeEventProcessing.objects.filter(
                stripe_event_id__in=[e["id"] for e in events]
            ).values_list("status", flat=True)
        )
        assert statuses == {EventStatus.PROCESSED}
    deliveries = [
        attempt
        for entry in control(stripe_settings, "/_standin/events")["events"]
        if entry["id"] in {e["id"] for e in events}
        for attempt in entry["attempts"]
    ]
    assert len(deliveries) == 3 * len(events)
    assert {attempt["status"] for attempt in deliveries} == {200}
    print(f"storm: {4 * len(events) + 1} deliveries in {time.monotonic() - started:.1f}s")


def _held_events(api: Any, charge_ids: set[str]) -> list[dict[str, Any]]:
    """Every stand-in event about the storm's charges (they are held, not sent yet)."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = api.v1.events.list(params=params)
        for event in page.data:
            data = event.to_dict()
            obj = data["data"]["object"]
            if {obj.get("id"), obj.get("charge"), obj.get("latest_charge")} & charge_ids:
                found.append(data)
        if not page.has_more:
            return found
        params = {"limit": 100, "starting_after": page.data[-1].id}


def _send(app: LiveApp, event: dict[str, Any]) -> tuple[int, Any]:
    """Deliver one event ourselves, signed now, as a second Stripe delivery would be."""
    payload = json.dumps(event)
    try:
        return app.post(WEBHOOK_PATH, payload, signed_headers(payload))
    finally:
        connection.close()  # this thread's connection, if it opened one
