"""What a refund owes after its commit (its Stripe call, pulling a paid-out share back) is an
outbox job written in the same transaction: a process that dies right after the commit
leaves it for the events worker, which finishes it exactly once.

Worked example: a host sold for 100.00 and was paid out their 90.00. The buyer asks for
50.00 back and the process dies right after the commit: the worker creates the refund at
Stripe, books it (the host's share, 45.00, leaves their payable), and then its second job
pulls the 45.00 back from the host's transfer: payable 0, one refund, one reversal.
"""

from __future__ import annotations

from disputes.models import RefundStatus, ReversalStatus
from disputes.services import request_refund
from events.models import Event
from events.tasks import deliver_events
from treasury.rls import system_context

from .conftest import DB, ledger_is_clean, payable, reload_refund
from .test_debts import paid_out_host, reversals_for  # noqa: F401  (a fixture)

pytestmark = DB


def test_a_crash_after_a_refund_request_leaves_its_jobs_to_the_worker(
    paid_out_host,  # noqa: F811
    stripe_api,
    django_capture_on_commit_callbacks,
):
    host, buyer = paid_out_host
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # died after COMMIT
        made = request_refund(
            actor=buyer, charge_id=host.charge_id, amount_cents=5000, idempotency_key="half"
        )
    assert len(callbacks) == 1
    refund = reload_refund(made)
    assert (refund.status, refund.stripe_refund_id) == (RefundStatus.PENDING, None)
    assert stripe_api.v1.refunds.list(params={"charge": host.charge_id}).data == []
    with system_context():
        assert list(
            Event.objects.filter(subject=f"refund:{made.pk}").values_list("type", flat=True)
        ) == ["refund.requested"]

    deliver_events()  # the worker's run: the refund, then (its own job) the claw-back
    deliver_events()

    refund = reload_refund(made)
    assert refund.status == RefundStatus.SUCCEEDED and refund.ledger_transaction_id
    [remote] = stripe_api.v1.refunds.list(params={"charge": host.charge_id}).data
    assert (remote.id, remote.amount) == (refund.stripe_refund_id, 5000)
    [reversal] = reversals_for(made)
    assert (reversal.status, reversal.amount_cents) == (ReversalStatus.REVERSED, 4500)
    transfer = stripe_api.v1.transfers.retrieve(host.payout.stripe_transfer_id)
    assert transfer.amount_reversed == 4500
    assert payable(host) == 0
    assert ledger_is_clean()
