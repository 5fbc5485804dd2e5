"""A payout that fails gives every cent back: the reservation is reversed, the balance is
restored exactly, the payout says why, and the recipient is told.

Worked example: 90.00 USD payable; an instant payout of 60.00 (fee 0.90, 59.10 sent). The
bank refuses it: payable is 90.00 again (the fee was never charged: it is earned only when
an instant payout is paid), clearing is back where it was, and the 59.10 transfer is pulled
back from the connected account.
"""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import override_settings

from ledger.selectors import ledger_differences
from payouts.selectors import available_balance
from payouts.services import initiate_payout, resume_payouts
from tests.factories import HostFactory
from treasury.rls import system_context

from .conftest import (
    DB,
    book_earning,
    control,
    deliver,
    earn,
    ledger_keys,
    onboard,
    payable,
    reload,
)
from .conftest import platform as platform_balance

pytestmark = DB


@pytest.fixture
def host(stripe_settings):
    host = HostFactory()
    host.account = onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000)
    return host


def pay_out(host, amount_cents, method="standard", key="k"):
    return initiate_payout(
        user=host, amount_cents=amount_cents, currency="USD", method=method, idempotency_key=key
    )


def test_the_bank_refusing_an_instant_payout_restores_the_balance_exactly(
    host, stripe_settings, stripe_api, django_capture_on_commit_callbacks
):
    clearing, revenue = platform_balance("payout_clearing"), platform_balance("fee_revenue")
    with django_capture_on_commit_callbacks(execute=True):
        payout = pay_out(host, 6000, method="instant")
    payout = reload(payout)
    assert (payout.status, payout.fee_cents) == ("in_flight", 90)
    assert payable(host) == 3000

    control(
        stripe_settings,
        f"/_standin/payouts/{payout.stripe_payout_id}/fail",
        {"failure_code": "account_closed"},
    )
    with django_capture_on_commit_callbacks(execute=True):
        deliver(
            stripe_api, "payout.failed", payout.stripe_payout_id, host.account.stripe_account_id
        )

    payout = reload(payout)
    assert payout.status == "failed"
    assert payout.failure_code == "account_closed"
    assert payout.failure_reason == "The bank account has been closed. (account_closed)"
    assert payable(host) == 9000
    with system_context():
        assert available_balance(user=host, currency="USD") == 9000
    assert platform_balance("payout_clearing") == clearing
    assert platform_balance("fee_revenue") == revenue
    assert ledger_keys(payout) == [f"payout:{payout.pk}:release", f"payout:{payout.pk}:reserve"]
    # The money went back from the connected account to the platform.
    transfer = stripe_api.v1.transfers.retrieve(payout.stripe_transfer_id)
    assert (transfer.amount, transfer.amount_reversed) == (5910, 5910)
    assert payout.stripe_transfer_reversal_id.startswith("trr_")
    # Stripe's transfer.reversed for our own reversal changes no money.
    deliver(stripe_api, "transfer.reversed", payout.stripe_transfer_id)
    assert reload(payout).reversed_cents == 5910
    assert payable(host) == 9000
    [message] = mail.outbox
    assert message.to == [host.email]
    assert "60.00 USD failed" in message.subject
    with system_context():
        assert list(ledger_differences()) == []


def test_stripe_refusing_the_transfer_fails_the_payout_and_releases_it(
    stripe_settings, django_capture_on_commit_callbacks
):
    """Payable booked without Stripe money behind it: the stand-in's platform balance cannot
    cover the transfer (balance_insufficient)."""
    host = HostFactory()
    onboard(stripe_settings, host)
    book_earning(host, 5000)
    with django_capture_on_commit_callbacks(execute=True):
        payout = pay_out(host, 5000)
    payout = reload(payout)
    assert (payout.status, payout.failure_code) == ("failed", "balance_insufficient")
    assert payout.failure_reason.startswith("Stripe refused the transfer")
    assert payout.stripe_transfer_id is None
    assert payable(host) == 5000
    assert len(mail.outbox) == 1


def test_a_reversed_transfer_gives_the_money_back_to_payable(
    host, stripe_api, django_capture_on_commit_callbacks
):
    """A paid 60.00 payout; Stripe reverses 10.00 of its transfer, then the other 50.00 (a
    refund clawing the shares back, say): payable gets each back; the payout stays paid."""
    with django_capture_on_commit_callbacks(execute=True):
        payout = pay_out(host, 6000)
    payout = reload(payout)
    assert payout.status == "paid" and payable(host) == 3000
    stripe_balance = platform_balance("stripe_balance")

    first = stripe_api.v1.transfers.reversals.create(
        payout.stripe_transfer_id, params={"amount": 1000}
    )
    deliver(stripe_api, "transfer.reversed", payout.stripe_transfer_id)
    payout = reload(payout)
    assert (payout.status, payout.reversed_cents, payable(host)) == ("paid", 1000, 4000)
    assert platform_balance("stripe_balance") - stripe_balance == 1000

    rest = stripe_api.v1.transfers.reversals.create(payout.stripe_transfer_id)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(stripe_api, "transfer.reversed", payout.stripe_transfer_id)
    payout = reload(payout)
    assert (payout.status, payout.reversed_cents, payable(host)) == ("paid", 6000, 9000)
    # One posting per Stripe reversal, of its own amount.
    assert ledger_keys(payout) == sorted(
        [
            f"payout:{payout.pk}:reserve",
            f"payout:{payout.pk}:reversal:{first.id}",
            f"payout:{payout.pk}:reversal:{rest.id}",
            f"payout:{payout.pk}:settle",
        ]
    )
    assert mail.outbox == []  # it was paid; a claw-back is not a failed payout
    with system_context():
        assert list(ledger_differences()) == []


def test_stripe_unreachable_leaves_the_payout_pending_until_resumed(
    host, stripe_api, django_capture_on_commit_callbacks
):
    with override_settings(STRIPE_API_BASE="http://127.0.0.1:9"):  # nothing listens there
        with django_capture_on_commit_callbacks(execute=True):
            payout = pay_out(host, 6000)
        payout = reload(payout)
        assert (payout.status, payout.stripe_transfer_id) == ("pending", None)
        assert payable(host) == 3000  # still reserved: it may have happened
    assert resume_payouts(user_ids=[host.pk]) == 1
    assert reload(payout).status == "paid"
    assert resume_payouts(user_ids=[host.pk]) == 0
