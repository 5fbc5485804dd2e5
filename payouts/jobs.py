"""What must happen after a payout's commit, as outbox jobs (events.registry, atomic=False):
each runs outside any transaction, is retried with backoff by the events worker until it is
done, and is tried once right after the commit that wrote its event. Registered by
PayoutsConfig.ready().

- `payouts.execute` (payout.requested, payout.failed): the Stripe steps the payout still
  owes: its transfer, an instant payout's connected payout, a failed payout's transfer pulled
  back. Raises while something is still owed (Stripe unreachable, another executor busy),
  so the delivery is retried.
- `payouts.notify_failed` (payout.failed): the recipient's mail, a delivery of its own, so
  a mail server that refuses never holds back the money steps.
"""

from __future__ import annotations

from events.models import Event
from events.registry import register
from payouts import services
from payouts.models import Payout
from treasury.rls import system_context

EXECUTE = "payouts.execute"
NOTIFY_FAILED = "payouts.notify_failed"


class StepsStillOwed(Exception):
    """The payout's Stripe steps are not all done yet: the delivery is retried."""


@register(EXECUTE, event_types=[services.PAYOUT_REQUESTED, services.PAYOUT_FAILED], atomic=False)
def execute(event: Event) -> None:
    payout = services.execute_payout(payout_id=int(event.payload["payout_id"]))
    with system_context():
        payout = Payout.objects.get(pk=payout.pk)
    if services.owes_stripe_steps(payout):
        raise StepsStillOwed(f"payout {payout.pk} ({payout.status}) still owes Stripe steps")


@register(NOTIFY_FAILED, event_types=[services.PAYOUT_FAILED], atomic=False)
def notify_failed(event: Event) -> None:
    services.notify_payout_failed(payout_id=int(event.payload["payout_id"]))
