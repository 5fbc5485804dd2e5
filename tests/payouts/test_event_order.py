"""Stripe's payout and transfer events are notifications, not facts: the payout and the
transfer are read back from Stripe, and each Stripe object is booked once, so any order and
any number of deliveries give the same books.

Worked examples (issue 14, defects 4 and 5):
- An instant payout of 60.00 (fee 0.90, 59.10 sent) is paid, then fails (the bank returns it
  days later: Stripe can fail a paid payout). Whether `payout.paid` or `payout.failed` is
  delivered first, it ends failed: the 60.00 reservation back on payable once, no fee
  earned, the 59.10 transfer pulled back.
- A paid 60.00 standard payout's transfer is reversed twice at Stripe, 3.00 then 2.00.
  `transfer.reversed` delivered newest first and twice: one posting per reversal (3.00 and
  2.00, keyed by their trr_ ids), payable +5.00, and the reconciliation with Stripe's
  balance transactions is clean.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ledger.selectors import ledger_differences
from monitoring.services import reconcile_stripe
from payouts.services import initiate_payout
from tests.factories import HostFactory
from treasury.rls import system_context
from treasury.stripe.services import process_event

from .conftest import (
    DB,
    control,
    deliver,
    earn,
    ledger_keys,
    onboard,
    payable,
    platform,
    reload,
    stripe_events,
)

pytestmark = DB


@pytest.fixture
def host(stripe_settings):
    host = HostFactory()
    host.account = onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000)
    return host


def instant_payout(host, capture):
    with capture(execute=True):
        payout = initiate_payout(
            user=host, amount_cents=6000, currency="USD", method="instant", idempotency_key="i"
        )
    payout = reload(payout)
    assert (payout.status, payout.net_cents, payable(host)) == ("in_flight", 5910, 3000)
    return payout


def books(host, payout):
    return {
        "payable": payable(host),
        "keys": [key.replace(str(payout.pk), "P") for key in ledger_keys(payout)],
    }


def test_a_paid_payout_that_fails_afterwards_returns_its_reservation_once(
    host, stripe_settings, stripe_api, django_capture_on_commit_callbacks
):
    started = timezone.now() - timedelta(seconds=5)
    platform_before = {
        name: platform(name) for name in ("payout_clearing", "fee_revenue", "stripe_balance")
    }
    payout = instant_payout(host, django_capture_on_commit_callbacks)
    account_id = host.account.stripe_account_id
    control(stripe_settings, f"/_standin/payouts/{payout.stripe_payout_id}/paid")
    deliver(stripe_api, "payout.paid", payout.stripe_payout_id, account_id)
    assert reload(payout).status == "paid"
    assert platform("fee_revenue") - platform_before["fee_revenue"] == 90

    control(stripe_settings, f"/_standin/payouts/{payout.stripe_payout_id}/fail")
    with django_capture_on_commit_callbacks(execute=True):
        deliver(stripe_api, "payout.failed", payout.stripe_payout_id, account_id)
    # Stripe's transfer.reversed for our pull-back, and late duplicates, change nothing.
    deliver(stripe_api, "transfer.reversed", payout.stripe_transfer_id)
    deliver(stripe_api, "payout.paid", payout.stripe_payout_id, account_id)

    payout = reload(payout)
    assert (payout.status, payout.failure_code) == ("failed", "account_closed")
    assert payable(host) == 9000  # the 60.00 reservation back, once
    for name, before in platform_before.items():
        assert platform(name) == before, name  # no fee earned, clearing empty, money back
    transfer = stripe_api.v1.transfers.retrieve(payout.stripe_transfer_id)
    assert transfer.amount_reversed == 5910 and payout.reversed_cents == 5910
    assert ledger_keys(payout) == [
        f"payout:{payout.pk}:release",
        f"payout:{payout.pk}:reserve",
        f"payout:{payout.pk}:settle",
        f"payout:{payout.pk}:unsettle",
    ]
    # The settlement matches the transfer (-59.10); its undoing, the pull-back (+59.10).
    assert reconciled_since(started) == 3


@pytest.mark.parametrize("first", ["payout.paid", "payout.failed"])
def test_paid_then_failed_ends_the_same_in_either_delivery_order(
    first, host, stripe_settings, stripe_api, django_capture_on_commit_callbacks
):
    payout = instant_payout(host, django_capture_on_commit_callbacks)
    account_id = host.account.stripe_account_id
    control(stripe_settings, f"/_standin/payouts/{payout.stripe_payout_id}/paid")
    control(stripe_settings, f"/_standin/payouts/{payout.stripe_payout_id}/fail")
    order = ["payout.paid", "payout.failed"]
    if first == "payout.failed":
        order.reverse()

    with django_capture_on_commit_callbacks(execute=True):
        for event_type in order + order:  # each delivered twice
            deliver(stripe_api, event_type, payout.stripe_payout_id, account_id)

    payout = reload(payout)
    assert payout.status == "failed"
    assert books(host, payout) == {
        "payable": 9000,
        "keys": ["payout:P:release", "payout:P:reserve"],
    }
    assert stripe_api.v1.transfers.retrieve(payout.stripe_transfer_id).amount_reversed == 5910


def test_each_transfer_reversal_is_booked_once_with_its_own_amount(
    host, stripe_api, django_capture_on_commit_callbacks
):
    started = timezone.now() - timedelta(seconds=5)
    with django_capture_on_commit_callbacks(execute=True):
        payout = initiate_payout(
            user=host, amount_cents=6000, currency="USD", method="standard", idempotency_key="s"
        )
    payout = reload(payout)
    assert payout.status == "paid" and payable(host) == 3000
    stripe_balance = platform("stripe_balance")
    first = stripe_api.v1.transfers.reversals.create(
        payout.stripe_transfer_id, params={"amount": 300}
    )
    second = stripe_api.v1.transfers.reversals.create(
        payout.stripe_transfer_id, params={"amount": 200}
    )
    newest, oldest = stripe_events(stripe_api, "transfer.reversed", payout.stripe_transfer_id)
    cumulative = [e["data"]["object"]["amount_reversed"] for e in (newest, oldest)]
    assert cumulative == [500, 300]  # what the events say: amounts so far, not each one's

    for event in (newest, newest, oldest):
        assert process_event(event=event).status == "processed"

    payout = reload(payout)
    assert (payout.status, payout.reversed_cents, payable(host)) == ("paid", 500, 3500)
    assert platform("stripe_balance") - stripe_balance == 500
    assert ledger_keys(payout) == sorted(
        [
            f"payout:{payout.pk}:reserve",
            f"payout:{payout.pk}:reversal:{first.id}",
            f"payout:{payout.pk}:reversal:{second.id}",
            f"payout:{payout.pk}:settle",
        ]
    )
    # Stripe's balance transactions: the charge, the transfer, the two reversals.
    assert reconciled_since(started) == 4


def reconciled_since(started) -> int:
    """Reconcile Stripe with the ledger from `started`: no difference; what matched."""
    result = reconcile_stripe(since=started, until=timezone.now() + timedelta(minutes=1))
    assert [str(d) for d in result.differences] == []
    with system_context():
        assert list(ledger_differences()) == []
    return result.run.matched_count


def test_a_clawed_back_paid_payout_that_fails_gives_back_each_cent_once(
    host, stripe_settings, stripe_api, django_capture_on_commit_callbacks
):
    """10.00 of the paid 59.10 transfer was reversed at Stripe (booked to payable) before the
    bank returned the payout: the unsettlement takes that 10.00 back from payable, so that
    with the 60.00 released the host is whole (90.00), and Stripe's balance gets back only
    the 49.10 the pull-back reverses."""
    payout = instant_payout(host, django_capture_on_commit_callbacks)
    account_id = host.account.stripe_account_id
    control(stripe_settings, f"/_standin/payouts/{payout.stripe_payout_id}/paid")
    deliver(stripe_api, "payout.paid", payout.stripe_payout_id, account_id)
    stripe_balance = platform("stripe_balance")
    # The connected account paid its 59.10 out: the platform sends it 10.00 more to reverse.
    stripe_api.v1.transfers.create(
        params={"amount": 1000, "currency": "usd", "destination": account_id}
    )
    stripe_api.v1.transfers.reversals.create(payout.stripe_transfer_id, params={"amount": 1000})
    deliver(stripe_api, "transfer.reversed", payout.stripe_transfer_id)
    assert (reload(payout).reversed_cents, payable(host)) == (1000, 4000)

    control(stripe_settings, f"/_standin/payouts/{payout.stripe_payout_id}/fail")
    with django_capture_on_commit_callbacks(execute=True):
        deliver(stripe_api, "payout.failed", payout.stripe_payout_id, account_id)
    deliver(stripe_api, "transfer.reversed", payout.stripe_transfer_id)

    payout = reload(payout)
    assert (payout.status, payout.reversed_cents, payable(host)) == ("failed", 5910, 9000)
    transfer = stripe_api.v1.transfers.retrieve(payout.stripe_transfer_id)
    assert transfer.amount_reversed == 5910
    # The ledger's Stripe balance moved as Stripe's did for this transfer: -59.10 settled,
    # +10.00 and +49.10 reversed.
    assert platform("stripe_balance") - stripe_balance == 1000 + 4910
    with system_context():
        assert list(ledger_differences()) == []
