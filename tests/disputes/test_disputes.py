"""A dispute takes the funds and Stripe's fee when it opens and holds the recipients' shares;
won, everything comes back but the fee; lost, the loss is borne as the split rule says.

Worked example: 100.00 USD, 10% to the platform, the 90.00 left split 70/30 (host 63.00,
artist 27.00). The buyer disputes it all; Stripe takes 100.00 and its 15.00 fee.
- opened: Stripe balance -115.00, dispute losses +115.00; the host's 63.00 and the
  artist's 27.00 move from payable to held.
- won: 100.00 back to Stripe's balance and out of dispute losses; holds released. The
  platform is out the 15.00 fee; host 63.00, artist 27.00 payable.
- lost, the platform bears it: holds released; the platform is out 115.00.
- lost, the recipients bear it: holds consumed (90.00 back to the platform); host and
  artist end at 0; the platform is out its own 10.00 part and the 15.00 fee.
"""

from __future__ import annotations

import random
import uuid

import pytest

from disputes.models import DisputeStatus
from disputes.services import ChargeDisputed, request_refund
from tests.factories import ArtistFactory, HostFactory, UserFactory
from treasury.rls import system_context
from treasury.stripe.models import StripeCharge, StripeEventProcessing
from treasury.stripe.services import retry_failed_events

from .conftest import (
    DB,
    control,
    deliver,
    dispute_of,
    events_about,
    held,
    ledger_is_clean,
    moved,
    payable,
    platform,
    rule,
    sell,
)

pytestmark = DB


@pytest.fixture
def sellers():
    return HostFactory(), ArtistFactory()


def sale(standin, sellers, *, loss_bearer="platform", amount_cents=10000, book=True):
    host, artist = sellers
    split = rule(
        owner=host, recipients=[(host, 7000), (artist, 3000)], dispute_loss_bearer=loss_bearer
    )
    return sell(
        standin, amount_cents=amount_cents, split_rule=split, buyer=UserFactory(), book=book
    )


def open_dispute(standin, charge_id, **body):
    return control(standin, f"/_standin/charges/{charge_id}/dispute", body)


def deliver_all(api, object_id, *, seed=7, times=2):
    """Every event about the object, shuffled, each delivered `times` times."""
    events = [e for e in events_about(api, object_id) if e["type"].startswith("charge.dispute")]
    random.Random(seed).shuffle(events)
    results = [deliver(e) for e in events for _ in range(times)]
    assert all(r.status == "processed" for r in results), [r.last_error for r in results]
    return events


def test_an_opened_dispute_takes_the_funds_and_fee_and_holds_the_shares(
    stripe_settings, stripe_api, sellers
):
    host, artist = sellers
    charge_id = sale(stripe_settings, sellers)
    before = platform()
    dispute = open_dispute(stripe_settings, charge_id, reason="fraudulent")

    deliver_all(stripe_api, charge_id)

    record = dispute_of(charge_id)
    assert (record.stripe_dispute_id, record.status, record.reason) == (
        dispute["id"],
        DisputeStatus.NEEDS_RESPONSE,
        "fraudulent",
    )
    assert (record.amount_cents, record.withdrawn_cents, record.fee_cents) == (10000, 10000, 1500)
    assert record.evidence_due_by is not None
    assert (payable(host), held(host), payable(artist), held(artist)) == (0, 6300, 0, 2700)
    assert moved(before, platform()) == {
        "stripe_balance": -11500,
        "fee_revenue": 0,
        "processing_fees": 0,
        "dispute_losses": 11500,
    }
    assert ledger_is_clean()


def test_an_updated_dispute_moves_on_and_a_refund_is_refused_while_it_is_open(
    stripe_settings, stripe_api, sellers
):
    charge_id = sale(stripe_settings, sellers)
    dispute = open_dispute(stripe_settings, charge_id)
    deliver_all(stripe_api, charge_id)
    control(stripe_settings, f"/_standin/disputes/{dispute['id']}/update", {})

    deliver_all(stripe_api, charge_id, seed=3)

    assert dispute_of(charge_id).status == DisputeStatus.UNDER_REVIEW
    with system_context():
        buyer = StripeCharge.objects.get(stripe_charge_id=charge_id).buyer
    with pytest.raises(ChargeDisputed):
        request_refund(actor=buyer, charge_id=charge_id, amount_cents=100, idempotency_key="r")


def test_a_won_dispute_returns_the_funds_and_releases_the_holds(
    stripe_settings, stripe_api, sellers
):
    host, artist = sellers
    charge_id = sale(stripe_settings, sellers)
    before = platform()
    dispute = open_dispute(stripe_settings, charge_id)
    control(stripe_settings, f"/_standin/disputes/{dispute['id']}/update", {})
    control(stripe_settings, f"/_standin/disputes/{dispute['id']}/close", {"status": "won"})

    deliver_all(stripe_api, charge_id)

    record = dispute_of(charge_id)
    assert record.status == DisputeStatus.WON and record.closed_at is not None
    assert record.outcome.startswith("won: 100.00 USD returned")
    assert (payable(host), held(host), payable(artist), held(artist)) == (6300, 0, 2700, 0)
    assert moved(before, platform()) == {
        "stripe_balance": -1500,
        "fee_revenue": 0,
        "processing_fees": 0,
        "dispute_losses": 1500,
    }
    assert ledger_is_clean()


@pytest.mark.parametrize(
    ("loss_bearer", "host_cents", "artist_cents", "platform_loss_cents"),
    [
        ("platform", 6300, 2700, 11500),
        ("recipients", 0, 0, 1000 + 1500),
    ],
)
def test_a_lost_dispute_is_borne_as_the_split_rule_says(
    stripe_settings, stripe_api, sellers, loss_bearer, host_cents, artist_cents, platform_loss_cents
):
    host, artist = sellers
    charge_id = sale(stripe_settings, sellers, loss_bearer=loss_bearer)
    before = platform()
    dispute = open_dispute(stripe_settings, charge_id)
    # Opened and booked first, then lost; the events arrive again, shuffled, twice.
    deliver_all(stripe_api, charge_id, times=1)
    control(stripe_settings, f"/_standin/disputes/{dispute['id']}/close", {"status": "lost"})

    deliver_all(stripe_api, charge_id, seed=11)

    record = dispute_of(charge_id)
    assert (record.status, record.loss_bearer) == (DisputeStatus.LOST, loss_bearer)
    assert (payable(host), payable(artist)) == (host_cents, artist_cents)
    assert (held(host), held(artist)) == (0, 0)
    assert moved(before, platform()) == {
        "stripe_balance": -11500,
        "fee_revenue": 0,
        "processing_fees": 0,
        "dispute_losses": platform_loss_cents,
    }
    assert ledger_is_clean()


def test_recipients_pay_the_dispute_fee_pro_rata_when_configured(
    stripe_settings, stripe_api, sellers, settings
):
    """DISPUTES_FEE_BEARER=recipients: the 15.00 fee split 63/27 is 10.50 / 4.50, kept even
    when the dispute is won."""
    settings.DISPUTES_FEE_BEARER = "recipients"
    host, artist = sellers
    charge_id = sale(stripe_settings, sellers)
    before = platform()
    dispute = open_dispute(stripe_settings, charge_id)
    control(stripe_settings, f"/_standin/disputes/{dispute['id']}/close", {"status": "won"})

    deliver_all(stripe_api, charge_id)

    assert (payable(host), payable(artist)) == (6300 - 1050, 2700 - 450)
    assert moved(before, platform())["dispute_losses"] == 0
    assert moved(before, platform())["stripe_balance"] == -1500
    assert ledger_is_clean()


def test_a_dispute_after_a_partial_refund_takes_the_next_cents_so_a_loss_nets_to_zero(
    stripe_settings, stripe_api, sellers, django_capture_on_commit_callbacks
):
    """40.00 refunded, the other 60.00 disputed and lost with the recipients bearing it: the
    refund and the loss together give back exactly the charge's split."""
    host, artist = sellers
    charge_id = sale(stripe_settings, sellers, loss_bearer="recipients")
    with system_context():
        buyer = StripeCharge.objects.get(stripe_charge_id=charge_id).buyer
    with django_capture_on_commit_callbacks(execute=True):
        request_refund(actor=buyer, charge_id=charge_id, amount_cents=4000, idempotency_key="r")
    dispute = open_dispute(stripe_settings, charge_id, amount=6000)
    control(stripe_settings, f"/_standin/disputes/{dispute['id']}/close", {"status": "lost"})

    deliver_all(stripe_api, charge_id)

    assert dispute_of(charge_id).holds["recipients"] == {str(host.pk): 3780, str(artist.pk): 1620}
    assert (payable(host), payable(artist), held(host), held(artist)) == (0, 0, 0, 0)
    assert ledger_is_clean()


def test_a_dispute_arriving_before_the_charge_event_books_the_charge_first(
    stripe_settings, stripe_api, sellers
):
    host, artist = sellers
    charge_id = sale(stripe_settings, sellers, book=False)
    open_dispute(stripe_settings, charge_id)

    deliver_all(stripe_api, charge_id)

    assert (held(host), held(artist)) == (6300, 2700)
    assert ledger_is_clean()


def test_a_dispute_for_a_charge_that_cannot_be_booked_yet_is_kept_and_retried(
    stripe_settings, stripe_api
):
    """The charge names a host the treasury does not know yet (their signup is still on its
    way): the dispute's events fail, are stored, and go through once the host exists."""
    host_id = uuid.uuid4()
    body = {"amount": 5000, "currency": "usd", "metadata": {"host_id": str(host_id)}}
    charge_id = control(stripe_settings, "/_standin/charges", body)["latest_charge"]["id"]
    open_dispute(stripe_settings, charge_id)
    created = next(
        e for e in events_about(stripe_api, charge_id) if e["type"] == "charge.dispute.created"
    )

    first = deliver(created)

    assert first.status == "failed" and "cannot be booked yet" in first.last_error
    with system_context():
        assert not StripeCharge.objects.filter(stripe_charge_id=charge_id).exists()

    host = HostFactory(id=host_id)
    assert retry_failed_events() >= 1

    with system_context():
        processing = StripeEventProcessing.objects.get(stripe_event_id=created["id"])
    assert processing.status == "processed" and processing.attempts == 2
    assert dispute_of(charge_id).status == DisputeStatus.NEEDS_RESPONSE
    assert held(host) == 4500  # 50.00 less the default 10% platform fee
    assert ledger_is_clean()
