"""A refund reverses the charge's split pro rata, to the cent, once, whatever the events.

Worked example (the stand-in charges Stripe's 2.9% + 30): a 100.00 USD charge pays Stripe
3.20, which the platform bears. The rule keeps 10% (10.00) for the platform and splits 90.00
70/30: the host 63.00, the artist 27.00. A refund of 33.33 takes back 3.33 of the platform's
fee, 21.00 from the host and 9.00 from the artist (Webster's rounding of 333.3 / 2099.79 /
899.91). The 66.67 refunded after that takes back the rest exactly: 6.67, 42.00, 18.00.
Stripe keeps its 3.20: the platform's Stripe balance ends at -3.20, its processing fees at
3.20, and everyone else at 0.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from disputes.models import RefundStatus
from disputes.services import fail_refund, record_stripe_refund, request_refund, resume_refunds
from ledger.models import LedgerTransaction
from tests.factories import AdminFactory, ArtistFactory, HostFactory, UserFactory
from treasury.models import AuditLog
from treasury.rls import system_context
from treasury.stripe.client import stripe_client

from .conftest import (
    DB,
    control,
    deliver,
    events_about,
    ledger_is_clean,
    moved,
    payable,
    platform,
    refunds_of,
    reload_refund,
    rule,
    sell,
)

pytestmark = DB


@pytest.fixture
def sale(stripe_settings):
    host, artist, buyer = HostFactory(), ArtistFactory(), UserFactory()
    split = rule(owner=host, recipients=[(host, 7000), (artist, 3000)])
    charge_id = sell(stripe_settings, amount_cents=10000, split_rule=split, buyer=buyer)
    return host, artist, buyer, charge_id


def refund(buyer, charge_id, amount_cents, capture, key="r1", **kwargs):
    with capture(execute=True):
        return request_refund(
            actor=buyer,
            charge_id=charge_id,
            amount_cents=amount_cents,
            idempotency_key=key,
            **kwargs,
        )


def test_partial_refunds_reverse_the_split_pro_rata_and_net_everyone_to_zero(
    sale, django_capture_on_commit_callbacks
):
    host, artist, buyer, charge_id = sale
    before = platform()
    assert (payable(host), payable(artist)) == (6300, 2700)

    first = refund(buyer, charge_id, 3333, django_capture_on_commit_callbacks)

    first = reload_refund(first)
    assert first.status == RefundStatus.SUCCEEDED and first.stripe_refund_id.startswith("re_")
    assert (payable(host), payable(artist)) == (6300 - 2100, 2700 - 900)
    assert moved(before, platform())["fee_revenue"] == -333
    assert first.split["platform_fee_cents"] == 333
    with system_context():
        posting = LedgerTransaction.objects.get(pk=first.ledger_transaction_id)
    assert (posting.idempotency_key, posting.event_source) == (
        f"refund:{first.stripe_refund_id}",
        "refund",
    )

    rest = refund(buyer, charge_id, None, django_capture_on_commit_callbacks, key="r2")

    assert reload_refund(rest).amount_cents == 6667
    assert (payable(host), payable(artist)) == (0, 0)
    # Stripe paid back all 100.00; the platform gave back its 10.00 fee; Stripe's 3.20 stays
    # in processing fees (booked by the charge).
    assert moved(before, platform()) == {
        "stripe_balance": -10000,
        "fee_revenue": -1000,
        "processing_fees": 0,
        "dispute_losses": 0,
    }
    assert ledger_is_clean()


def test_stripes_events_about_a_refund_book_it_once_in_any_order(
    sale, stripe_api, django_capture_on_commit_callbacks
):
    host, artist, buyer, charge_id = sale
    made = refund(buyer, charge_id, 5000, django_capture_on_commit_callbacks)
    events = events_about(stripe_api, charge_id)
    refund_events = [e for e in events if e["type"].startswith(("refund.", "charge.refunded"))]
    assert {e["type"] for e in refund_events} == {
        "refund.created",
        "charge.refunded",
        "refund.updated",
    }

    results = [deliver(e) for e in reversed(refund_events) for _ in range(2)]

    assert [r.status for r in results] == ["processed"] * 6
    assert [getattr(r, "was_duplicate", False) for r in results] == [False, True] * 3
    with system_context():
        postings = LedgerTransaction.objects.filter(idempotency_key__startswith="refund:")
        assert postings.filter(reference_id=reload_refund(made).stripe_refund_id).count() == 1
    assert (payable(host), payable(artist)) == (6300 - 3150, 2700 - 1350)
    assert ledger_is_clean()


def test_a_refund_made_at_stripe_directly_is_adopted_from_its_event(sale, stripe_api):
    host, artist, buyer, charge_id = sale
    made = stripe_api.v1.refunds.create(params={"charge": charge_id, "amount": 2500})
    charge_refunded = next(
        e for e in events_about(stripe_api, charge_id) if e["type"] == "charge.refunded"
    )

    assert deliver(charge_refunded).status == "processed"

    [adopted] = refunds_of(charge_id)
    assert (adopted.stripe_refund_id, adopted.requested_by_id, adopted.status) == (
        made.id,
        None,
        RefundStatus.SUCCEEDED,
    )
    assert (adopted.amount_cents, adopted.buyer_id) == (2500, buyer.pk)
    assert (payable(host), payable(artist)) == (6300 - 1575, 2700 - 675)
    with system_context():
        assert AuditLog.objects.filter(action="refund.adopt", target_id=str(adopted.pk)).exists()


def test_a_refund_that_fails_after_it_was_booked_is_booked_back(
    sale, django_capture_on_commit_callbacks
):
    host, artist, buyer, charge_id = sale
    before = platform()
    made = reload_refund(refund(buyer, charge_id, 4000, django_capture_on_commit_callbacks))
    later = refund(buyer, charge_id, 3000, django_capture_on_commit_callbacks, key="r2")
    assert made.status == RefundStatus.SUCCEEDED

    # The card was closed: Stripe tells us the first refund failed after all.
    failed = record_stripe_refund(
        refund={
            "id": made.stripe_refund_id,
            "charge": charge_id,
            "amount": 4000,
            "currency": "usd",
            "status": "failed",
            "failure_reason": "expired_or_canceled_card",
        }
    )

    assert failed.status == RefundStatus.FAILED and failed.failure_transaction_id is not None
    assert "expired_or_canceled_card" in failed.failure_reason
    # What stays refunded is the second refund's 30.00 alone, split as 30.00 of the charge.
    assert (payable(host), payable(artist)) == (6300 - 1890, 2700 - 810)
    assert moved(before, platform())["stripe_balance"] == -3000
    assert moved(before, platform())["fee_revenue"] == -300
    # Idempotent: the same news again books nothing more.
    assert fail_refund(refund_id=failed.pk, reason="again").failure_transaction_id == (
        failed.failure_transaction_id
    )
    assert reload_refund(later).status == RefundStatus.SUCCEEDED
    assert ledger_is_clean()


def test_the_platform_keeps_its_fee_when_so_configured(
    stripe_settings, settings, django_capture_on_commit_callbacks
):
    """Platform keeps its 10.00: the recipients give back the whole 100.00, its fee part
    split 70/30 like their shares (7.00 / 3.00): the host ends at -7.00, the artist -3.00."""
    settings.REFUNDS_PLATFORM_REFUNDS_FEE = False
    host, artist, buyer = HostFactory(), ArtistFactory(), UserFactory()
    split = rule(owner=host, recipients=[(host, 7000), (artist, 3000)])
    charge_id = sell(stripe_settings, amount_cents=10000, split_rule=split, buyer=buyer)
    revenue = platform()["fee_revenue"]

    refund(buyer, charge_id, 2500, django_capture_on_commit_callbacks)
    settings.REFUNDS_PLATFORM_REFUNDS_FEE = True  # too late: the charge's first refund decided
    refund(buyer, charge_id, None, django_capture_on_commit_callbacks, key="r2")

    assert (payable(host), payable(artist)) == (-700, -300)
    assert platform()["fee_revenue"] == revenue
    assert all(not r.platform_refunds_fee for r in refunds_of(charge_id))
    assert ledger_is_clean()


def test_recipients_who_bore_stripes_fee_get_it_back_when_the_platform_absorbs_it(
    stripe_settings, settings, django_capture_on_commit_callbacks
):
    """9.99 USD, recipients bear Stripe's 0.59 (0.41 host / 0.18 artist). A full refund with
    REFUNDS_PLATFORM_ABSORBS_STRIPE_FEE gives them the 0.59 back: both end at exactly 0 and
    the platform's processing fees carry the 0.59 Stripe kept. Without it, they would end at
    -0.41 and -0.18."""
    settings.REFUNDS_PLATFORM_ABSORBS_STRIPE_FEE = True
    host, artist, buyer = HostFactory(), ArtistFactory(), UserFactory()
    split = rule(
        owner=host, recipients=[(host, 7000), (artist, 3000)], stripe_fee_bearer="recipients"
    )
    charge_id = sell(stripe_settings, amount_cents=999, split_rule=split, buyer=buyer)
    assert (payable(host), payable(artist)) == (630 - 41, 270 - 18)
    processing = platform()["processing_fees"]

    refund(buyer, charge_id, 500, django_capture_on_commit_callbacks)
    refund(buyer, charge_id, None, django_capture_on_commit_callbacks, key="r2")

    assert (payable(host), payable(artist)) == (0, 0)
    assert platform()["processing_fees"] - processing == 59
    assert ledger_is_clean()


def test_an_admin_refunds_any_charge_and_the_buyer_sees_it(
    sale, django_capture_on_commit_callbacks
):
    host, artist, buyer, charge_id = sale
    admin = AdminFactory()
    made = refund(admin, charge_id, 1000, django_capture_on_commit_callbacks, reason="duplicate")

    made = reload_refund(made)
    assert (made.requested_by_id, made.buyer_id, made.reason) == (admin.pk, buyer.pk, "duplicate")
    assert made.status == RefundStatus.SUCCEEDED
    assert (payable(host), payable(artist)) == (6300 - 630, 2700 - 270)


def test_a_refund_stripe_refuses_fails_and_moves_no_money(
    sale, stripe_settings, django_capture_on_commit_callbacks
):
    """The buyer also disputed with their bank, and Stripe heard first: it refuses the
    refund (charge_disputed). The refund fails with Stripe's reason; the books do not move,
    and what was reserved of the charge is refundable again."""
    host, artist, buyer, charge_id = sale
    control(stripe_settings, f"/_standin/charges/{charge_id}/dispute", {})

    made = reload_refund(refund(buyer, charge_id, 1000, django_capture_on_commit_callbacks))

    assert made.status == RefundStatus.FAILED and made.stripe_refund_id is None
    assert "charge_disputed" in made.failure_reason
    assert made.ledger_transaction_id is None
    assert (payable(host), payable(artist)) == (6300, 2700)
    with system_context():
        assert AuditLog.objects.filter(action="refund.failed", target_id=str(made.pk)).exists()


def test_a_refund_stripe_never_answered_is_sent_again_by_the_job(
    sale, stripe_settings, django_capture_on_commit_callbacks
):
    host, artist, buyer, charge_id = sale
    with override_settings(STRIPE_API_BASE="http://127.0.0.1:9"):  # nothing listens there
        made = refund(buyer, charge_id, 1000, django_capture_on_commit_callbacks)
    assert reload_refund(made).status == RefundStatus.PENDING

    assert resume_refunds(older_than=timedelta(0)) >= 1

    made = reload_refund(made)
    assert made.status == RefundStatus.SUCCEEDED and made.stripe_refund_id
    assert (payable(host), payable(artist)) == (6300 - 630, 2700 - 270)
    # Again: nothing left to send for it, and Stripe made one refund, not two.
    resume_refunds(older_than=timedelta(0))
    assert len(stripe_api_refunds(charge_id)) == 1
    assert reload_refund(made).ledger_transaction_id is not None


def stripe_api_refunds(charge_id: str) -> list:
    return stripe_client().v1.refunds.list(params={"charge": charge_id}).data
