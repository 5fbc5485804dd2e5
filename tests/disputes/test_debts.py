"""A refund of money already paid out: pulled back from the recipient's connected account
where Stripe can, else a debt on their payable that their next earnings pay first.

Worked example: the host sells for 100.00 (default terms: 10% to the platform) and is paid
out their 90.00 (a Stripe transfer to their connected account). The buyer is refunded in
full: the host's share, 90.00, comes off a payable of 0.
- The connected account still holds the 90.00: the transfer is reversed for it, Stripe's
  balance gets it back, and the payable is back at 0.
- The connected account already paid it to the bank: Stripe refuses the reversal
  (balance_insufficient). The payable stays at -90.00: a debt, written on the refund. The
  next sale of 150.00 earns 135.00, of which 90.00 pays the debt: 45.00 may be paid out, not
  a cent more.
"""

from __future__ import annotations

import pytest

from disputes.models import RefundTransferReversal, ReversalStatus
from disputes.services import request_refund, resume_refunds
from payouts.models import Payout, PayoutStatus
from payouts.selectors import payout_balance
from payouts.services import initiate_payout
from tests.factories import HostFactory, UserFactory
from treasury.errors import InsufficientFunds
from treasury.models import AuditLog
from treasury.rls import system_context

from .conftest import (
    DB,
    deliver,
    events_about,
    ledger_is_clean,
    moved,
    onboard,
    payable,
    platform,
    reload_refund,
    sell,
)

pytestmark = DB


@pytest.fixture
def paid_out_host(stripe_settings, django_capture_on_commit_callbacks):
    """A host who sold for 100.00 to a buyer and was paid out all of their 90.00."""
    host, buyer = HostFactory(), UserFactory()
    host.account = onboard(stripe_settings, host)
    host.charge_id = sell(stripe_settings, amount_cents=10000, host=host, buyer=buyer)
    assert payable(host) == 9000
    with django_capture_on_commit_callbacks(execute=True):
        payout = initiate_payout(
            user=host, amount_cents=9000, currency="USD", method="standard", idempotency_key="p1"
        )
    with system_context():
        host.payout = Payout.objects.get(pk=payout.pk)
    assert host.payout.status == PayoutStatus.PAID and payable(host) == 0
    return host, buyer


def reversals_for(refund) -> list[RefundTransferReversal]:
    with system_context():
        return list(RefundTransferReversal.objects.filter(refund_id=refund.pk).order_by("id"))


def balance_of(user):
    with system_context():
        return payout_balance(user=user, currency="USD")


def refund_all(buyer, charge_id, capture, key="r1"):
    with capture(execute=True):
        made = request_refund(
            actor=buyer, charge_id=charge_id, amount_cents=None, idempotency_key=key
        )
    return reload_refund(made)


def test_a_refund_after_a_payout_pulls_the_share_back_from_the_transfer(
    paid_out_host, stripe_api, django_capture_on_commit_callbacks
):
    host, buyer = paid_out_host
    before = platform()
    with django_capture_on_commit_callbacks(execute=True):
        made = request_refund(
            actor=buyer, charge_id=host.charge_id, amount_cents=5000, idempotency_key="half"
        )

    [reversal] = reversals_for(made)
    assert (reversal.status, reversal.amount_cents, reversal.payout_id) == (
        ReversalStatus.REVERSED,
        4500,
        host.payout.pk,
    )
    assert payable(host) == 0  # -45.00 from the refund, +45.00 pulled back
    transfer = stripe_api.v1.transfers.retrieve(host.payout.stripe_transfer_id)
    assert transfer.amount_reversed == 4500
    with system_context():
        payout = Payout.objects.get(pk=host.payout.pk)
    assert (payout.status, payout.reversed_cents) == (PayoutStatus.PAID, 4500)
    # Stripe: -50.00 to the buyer, +45.00 back from the connected account.
    assert moved(before, platform())["stripe_balance"] == -5000 + 4500
    assert reload_refund(made).recovery_note == ""

    # Stripe's own transfer.reversed event changes nothing more.
    reversed_event = next(
        e
        for e in events_about(stripe_api, host.payout.stripe_transfer_id)
        if e["type"] == "transfer.reversed"
    )
    assert deliver(reversed_event).status == "processed"
    assert payable(host) == 0
    assert ledger_is_clean()


def test_a_refused_transfer_reversal_is_a_debt_paid_by_the_next_earnings_first(
    paid_out_host, stripe_settings, stripe_api, django_capture_on_commit_callbacks
):
    host, buyer = paid_out_host
    # The connected account paid its balance out to the bank, as Express accounts do.
    stripe_api.v1.payouts.create(
        params={"amount": 9000, "currency": "usd"},
        options={"stripe_account": host.account.stripe_account_id},
    )

    made = refund_all(buyer, host.charge_id, django_capture_on_commit_callbacks)

    [reversal] = reversals_for(made)
    assert (reversal.status, reversal.failure_code, reversal.amount_cents) == (
        ReversalStatus.FAILED,
        "balance_insufficient",
        9000,
    )
    assert payable(host) == -9000
    assert "90.00 USD" in made.recovery_note and "debt" in made.recovery_note
    assert balance_of(host).debt_cents == 9000
    assert balance_of(host).available_cents == 0
    with pytest.raises(InsufficientFunds):
        initiate_payout(
            user=host, amount_cents=100, currency="USD", method="standard", idempotency_key="p2"
        )
    with system_context():
        assert AuditLog.objects.filter(
            action="refund.transfer_reversal_failed", target_id=str(reversal.pk)
        ).exists()

    # The job does not ask again: the refusal is final, the debt is what remains.
    resume_refunds()
    assert len(reversals_for(made)) == 1 and payable(host) == -9000

    sell(stripe_settings, amount_cents=15000, host=host, buyer=UserFactory())

    assert payable(host) == 13500 - 9000
    assert (balance_of(host).available_cents, balance_of(host).debt_cents) == (4500, 0)
    with pytest.raises(InsufficientFunds):
        initiate_payout(
            user=host, amount_cents=4501, currency="USD", method="standard", idempotency_key="p3"
        )
    with django_capture_on_commit_callbacks(execute=True):
        paid = initiate_payout(
            user=host, amount_cents=4500, currency="USD", method="standard", idempotency_key="p4"
        )
    assert paid.amount_cents == 4500 and payable(host) == 0
    assert ledger_is_clean()


def test_two_refunds_never_pull_the_same_debt_twice(
    paid_out_host, stripe_settings, stripe_api, django_capture_on_commit_callbacks
):
    """Two charges refunded: each reversal is planned against what is still owed, so the
    transfer is reversed by exactly the shortfall, never more."""
    host, buyer = paid_out_host
    second = sell(stripe_settings, amount_cents=2000, host=host, buyer=buyer)  # +18.00
    assert payable(host) == 1800

    refund_all(buyer, host.charge_id, django_capture_on_commit_callbacks)  # -90.00
    refund_all(buyer, second, django_capture_on_commit_callbacks, key="r2")  # -18.00

    # 90 + 18 taken, 18 was still in payable: 90.00 pulled back from the 90.00 transfer.
    transfer = stripe_api.v1.transfers.retrieve(host.payout.stripe_transfer_id)
    assert transfer.amount_reversed == 9000
    assert payable(host) == 0
    assert ledger_is_clean()
