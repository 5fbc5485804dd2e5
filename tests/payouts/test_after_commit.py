"""What must happen after a payout's commit happens: it is an outbox job written in the same
transaction, run by the events worker with retries, and a failing notification holds no
money step back.

Worked example (issue 14, defect 3): 90.00 USD payable; an instant payout of 60.00 (fee
0.90, 59.10 transferred and paid out on the connected account). The bank refuses it
(`payout.failed`) while the mail server is down: the webhook still answers 200, the 59.10
transfer is pulled back from the connected account, payable is 90.00 again, and the notice
waits in its own delivery until the mail server answers.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from events.models import DeliveryStatus, Event, EventDelivery
from events.services import deliver_event
from events.tasks import deliver_events
from ledger.selectors import ledger_differences
from payouts.jobs import EXECUTE, NOTIFY_FAILED
from payouts.services import initiate_payout
from tests.factories import HostFactory
from treasury.rls import system_context

from .conftest import (
    DB,
    REFUSING_MAIL_BACKEND,
    control,
    deliver,
    earn,
    ledger_keys,
    onboard,
    payable,
    post_webhook,
    reload,
    transfers_to,
)


def deliveries_of(payout, event_type: str) -> dict[str, EventDelivery]:
    with system_context():
        return {
            d.handler: d
            for d in EventDelivery.objects.filter(
                event__subject=f"payout:{payout.pk}", event__type=event_type
            )
        }


def test_a_mail_that_cannot_be_sent_never_holds_back_pulling_the_transfer_back(
    committed_db, test_database_only, stripe_settings, stripe_api, settings
):
    """Real commits: the callbacks after the webhook's commit run inside its request, as in
    production. Before the fix the refused mail crashed the webhook (500, after the commit)
    and the pull-back of the transfer never ran."""
    settings.EMAIL_BACKEND = REFUSING_MAIL_BACKEND
    host = HostFactory()
    account = onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000)
    payout = initiate_payout(
        user=host, amount_cents=6000, currency="USD", method="instant", idempotency_key="mailless"
    )
    payout = reload(payout)
    assert (payout.status, payout.fee_cents, payable(host)) == ("in_flight", 90, 3000)
    control(stripe_settings, f"/_standin/payouts/{payout.stripe_payout_id}/fail")

    response = post_webhook(
        stripe_api, "payout.failed", payout.stripe_payout_id, account.stripe_account_id
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "processed"
    payout = reload(payout)
    assert (payout.status, payout.failure_code) == ("failed", "account_closed")
    assert payable(host) == 9000
    [transfer] = transfers_to(stripe_api, account.stripe_account_id)
    assert (transfer["amount"], transfer["amount_reversed"]) == (5910, 5910)
    assert payout.stripe_transfer_reversal_id.startswith("trr_")
    assert (payout.reversed_cents, payout.stripe_transfer_reversal_id) == (
        5910,
        transfer["reversals"]["data"][0]["id"],
    )
    assert ledger_keys(payout) == [f"payout:{payout.pk}:release", f"payout:{payout.pk}:reserve"]
    with system_context():
        assert list(ledger_differences()) == []
    jobs = deliveries_of(payout, "payout.failed")
    assert jobs[EXECUTE].status == DeliveryStatus.SUCCEEDED
    notice = jobs[NOTIFY_FAILED]
    assert (notice.status, notice.attempts) == (DeliveryStatus.FAILED, 1)
    assert "Connection refused" in notice.last_error
    assert mail.outbox == []

    # The mail server is back; the worker retries the notice when it is due, once.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with system_context():
        EventDelivery.objects.filter(pk=notice.pk).update(next_attempt_at=timezone.now())
    deliver_event(event_id=notice.event_id)
    deliver_event(event_id=notice.event_id)
    [message] = mail.outbox
    assert message.to == [host.email] and "60.00 USD failed" in message.subject
    assert deliveries_of(payout, "payout.failed")[NOTIFY_FAILED].status == DeliveryStatus.SUCCEEDED


@pytest.fixture
def host(stripe_settings):
    host = HostFactory()
    host.account = onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000)
    return host


@DB
def test_a_crash_right_after_the_commit_leaves_a_job_that_the_worker_finishes(
    host, stripe_api, django_capture_on_commit_callbacks
):
    # execute=False: the process dies after COMMIT, before any callback runs.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        payout = initiate_payout(
            user=host, amount_cents=6000, currency="USD", method="standard", idempotency_key="k"
        )
    assert len(callbacks) == 1
    assert reload(payout).status == "pending"
    assert transfers_to(stripe_api, host.account.stripe_account_id) == []
    with system_context():
        [event] = Event.objects.filter(subject=f"payout:{payout.pk}")
    assert (event.type, event.payload["payout_id"]) == ("payout.requested", payout.pk)

    deliver_events()  # the worker's scheduled run

    payout = reload(payout)
    assert payout.status == "paid" and payable(host) == 3000
    [transfer] = transfers_to(stripe_api, host.account.stripe_account_id)
    assert (transfer["id"], transfer["amount"]) == (payout.stripe_transfer_id, 6000)
    assert deliveries_of(payout, "payout.requested")[EXECUTE].status == DeliveryStatus.SUCCEEDED
    deliver_events()  # a second run finds nothing owed
    assert len(transfers_to(stripe_api, host.account.stripe_account_id)) == 1


@DB
def test_a_crash_after_a_payout_failed_leaves_the_pull_back_to_the_worker(
    host, stripe_api, stripe_settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        payout = initiate_payout(
            user=host, amount_cents=6000, currency="USD", method="instant", idempotency_key="k"
        )
    payout = reload(payout)
    control(stripe_settings, f"/_standin/payouts/{payout.stripe_payout_id}/fail")
    with django_capture_on_commit_callbacks(execute=False):
        deliver(stripe_api, "payout.failed", payout.stripe_payout_id, payout.stripe_account_id)
    assert (reload(payout).status, payable(host)) == ("failed", 9000)
    transfer = stripe_api.v1.transfers.retrieve(payout.stripe_transfer_id)
    assert transfer.amount_reversed == 0  # still on the connected account

    deliver_events()

    transfer = stripe_api.v1.transfers.retrieve(payout.stripe_transfer_id)
    assert transfer.amount_reversed == 5910
    assert reload(payout).reversed_cents == 5910
    assert len(mail.outbox) == 1
    assert payable(host) == 9000


@DB
def test_a_job_that_cannot_reach_stripe_is_retried_until_it_can(
    host, stripe_settings, settings, django_capture_on_commit_callbacks
):
    settings.EVENTS_RETRY_BASE_SECONDS = 60
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    with django_capture_on_commit_callbacks(execute=True):
        payout = initiate_payout(
            user=host, amount_cents=6000, currency="USD", method="standard", idempotency_key="k"
        )
    job = deliveries_of(payout, "payout.requested")[EXECUTE]
    assert (reload(payout).status, job.status, job.attempts) == ("pending", "failed", 1)
    assert "still owes Stripe steps" in job.last_error
    assert job.next_attempt_at >= timezone.now() + timedelta(seconds=50)

    settings.STRIPE_API_BASE = stripe_settings.base_url
    with system_context():
        EventDelivery.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    deliver_events()

    assert reload(payout).status == "paid"
    job = deliveries_of(payout, "payout.requested")[EXECUTE]
    assert (job.status, job.attempts) == ("succeeded", 2)
