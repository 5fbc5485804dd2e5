"""With real commits: concurrent refunds of one charge, and the whole path over HTTP with the
stand-in delivering its signed webhooks to the app (out of order and twice, when held and
released so). Fresh users and unique ids; assertions on their own rows only."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection, connections

from disputes.models import Dispute, DisputeStatus, Refund, RefundStatus
from disputes.services import ExceedsRefundable, request_refund
from tests.factories import AdminFactory, ArtistFactory, HostFactory, UserFactory
from tests.stripe.conftest import WEBHOOK_PATH, LiveApp, wait_until
from treasury.api import token_pair
from treasury.rls import system_context
from treasury.stripe.models import EventStatus, StripeEventProcessing

from .conftest import control, held, ledger_is_clean, payable, rule, sell

pytestmark = pytest.mark.xdist_group("disputes-committed")


@pytest.fixture
def live_app(committed_db: None, stripe_settings: Any) -> Iterator[LiveApp]:
    """The app over HTTP (pooled WSGI threads keeping their connections), the stand-in
    delivering its webhooks to it."""
    runtime = connections.settings["default"]
    saved_max_age = runtime.get("CONN_MAX_AGE", 0)
    runtime["CONN_MAX_AGE"] = None
    app = LiveApp()
    stripe_settings.configure_webhook(app.url + WEBHOOK_PATH, django_settings.STRIPE_WEBHOOK_SECRET)
    yield app
    stripe_settings.configure_webhook(None, None)
    app.stop()
    runtime["CONN_MAX_AGE"] = saved_max_age


def in_threads(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls at once, each in its own thread and database connection; returns what
    each returned or raised."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            start.wait()
            results[index] = call()
        except Exception as exc:  # the outcome under test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def sellers_and_sale(standin: Any, *, loss_bearer: str = "platform") -> tuple[Any, ...]:
    host, artist, buyer = HostFactory(), ArtistFactory(), UserFactory()
    split = rule(
        owner=host, recipients=[(host, 7000), (artist, 3000)], dispute_loss_bearer=loss_bearer
    )
    charge_id = sell(standin, amount_cents=10000, split_rule=split, buyer=buyer)
    return host, artist, buyer, charge_id


def test_concurrent_partial_refunds_of_one_charge_add_up_exactly(committed_db, stripe_settings):
    host, artist, _buyer, charge_id = sellers_and_sale(stripe_settings)
    admin = AdminFactory()
    parts = [1234, 2500, 1, 3333, 2932]

    def refund(n: int, cents: int) -> Callable[[], Refund]:
        return lambda: request_refund(
            actor=admin, charge_id=charge_id, amount_cents=cents, idempotency_key=f"c{n}"
        )

    results = in_threads([refund(n, cents) for n, cents in enumerate(parts)])

    assert all(isinstance(r, Refund) for r in results), results
    with system_context():
        refunds = Refund.objects.filter(charge_id=charge_id)
        assert sorted(r.amount_cents for r in refunds) == sorted(parts)
        assert {r.status for r in refunds} == {RefundStatus.SUCCEEDED}
    assert (payable(host), payable(artist)) == (0, 0)
    assert ledger_is_clean()


def test_two_refunds_that_together_exceed_the_charge_cannot_both_pass(
    committed_db, stripe_settings
):
    host, artist, _buyer, charge_id = sellers_and_sale(stripe_settings)
    admin = AdminFactory()

    results = in_threads(
        [
            lambda n=n: request_refund(
                actor=admin, charge_id=charge_id, amount_cents=6000, idempotency_key=f"x{n}"
            )
            for n in range(2)
        ]
    )

    assert sorted(type(r).__name__ for r in results) == ["ExceedsRefundable", "Refund"]
    assert any(isinstance(r, ExceedsRefundable) for r in results)
    assert (payable(host), payable(artist)) == (6300 - 3780, 2700 - 1620)


def processing_of(object_ids: set[str]) -> list[StripeEventProcessing]:
    with system_context():
        return list(StripeEventProcessing.objects.filter(stripe_object_id__in=object_ids))


def test_a_refund_asked_over_http_is_settled_by_stripes_webhooks(live_app, stripe_settings):
    host, artist, buyer, charge_id = sellers_and_sale(stripe_settings)
    headers = {"Authorization": f"Bearer {token_pair(buyer)['access']}", "Idempotency-Key": "h1"}

    status, body = live_app.post(
        "/api/refunds", f'{{"charge_id": "{charge_id}", "amount_cents": 4000}}', headers
    )

    assert status == 201, body

    def settled() -> bool:
        with system_context():
            refund = Refund.objects.get(pk=body["id"])
        events = processing_of({charge_id, refund.stripe_refund_id or "-"})
        types = {p.event_type for p in events if p.status == EventStatus.PROCESSED}
        return (
            refund.status == RefundStatus.SUCCEEDED
            and {
                "refund.created",
                "charge.refunded",
                "refund.updated",
            }
            <= types
        )

    assert wait_until(settled)
    assert (payable(host), payable(artist)) == (6300 - 2520, 2700 - 1080)
    assert all(p.status == EventStatus.PROCESSED for p in processing_of({charge_id}))
    assert ledger_is_clean()


@pytest.mark.parametrize(
    ("loss_bearer", "host_cents", "artist_cents"),
    [("platform", 6300, 2700), ("recipients", 0, 0)],
)
def test_a_lost_dispute_delivered_shuffled_and_twice_over_http(
    live_app, stripe_settings, loss_bearer, host_cents, artist_cents
):
    host, artist, _buyer, charge_id = sellers_and_sale(stripe_settings, loss_bearer=loss_bearer)
    control(stripe_settings, "/_standin/hold", {"hold": True})
    dispute = control(stripe_settings, f"/_standin/charges/{charge_id}/dispute", {})
    control(stripe_settings, f"/_standin/disputes/{dispute['id']}/update", {})
    control(stripe_settings, f"/_standin/disputes/{dispute['id']}/close", {"status": "lost"})

    control(stripe_settings, "/_standin/release", {"order": "shuffle", "seed": 5, "duplicates": 2})

    def decided() -> bool:
        with system_context():
            found = Dispute.objects.filter(stripe_dispute_id=dispute["id"]).first()
        events = processing_of({dispute["id"]})
        return (
            found is not None
            and found.status == DisputeStatus.LOST
            and len(events) == 4
            and all(p.status == EventStatus.PROCESSED for p in events)
        )

    assert wait_until(decided)
    assert (payable(host), payable(artist)) == (host_cents, artist_cents)
    assert (held(host), held(artist)) == (0, 0)
    assert ledger_is_clean()
