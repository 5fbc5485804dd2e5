"""What must happen after a refund's commit, as outbox jobs (events.registry, atomic=False):
each runs outside any transaction, is retried with backoff by the events worker until it is
done, and is tried once right after the commit that wrote its event. Registered by
DisputesConfig.ready().

- `disputes.send_refund` (refund.requested): create the refund at Stripe. Raises while
  Stripe has not answered, so the delivery is retried.
- `disputes.recover_shortfalls` (refund.booked): pull back from their transfers what the
  refund left recipients who were already paid out owing. Raises while a planned transfer
  reversal is still unanswered.
"""

from __future__ import annotations

from django.conf import settings

from disputes import services
from disputes.models import RefundStatus, ReversalStatus
from events.models import Event
from events.registry import register

SEND_REFUND = "disputes.send_refund"
RECOVER_SHORTFALLS = "disputes.recover_shortfalls"


class StillOwed(Exception):
    """Stripe has not answered yet: the delivery is retried."""


@register(SEND_REFUND, event_types=[services.REFUND_REQUESTED], atomic=False)
def send_refund(event: Event) -> None:
    refund = services.send_refund_to_stripe(refund_id=int(event.payload["refund_id"]))
    if refund.status == RefundStatus.PENDING and not refund.stripe_refund_id:
        raise StillOwed(f"refund {refund.pk} is not answered by Stripe yet")


@register(RECOVER_SHORTFALLS, event_types=[services.REFUND_BOOKED], atomic=False)
def recover_shortfalls(event: Event) -> None:
    if not settings.REFUNDS_REVERSE_TRANSFERS:
        return
    reversals = services.recover_refund_shortfalls(refund_id=int(event.payload["refund_id"]))
    waiting = [row.pk for row in reversals if row.status == ReversalStatus.PENDING]
    if waiting:
        raise StillOwed(f"transfer reversals {waiting} are not answered by Stripe yet")
