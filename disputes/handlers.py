"""The refunds' and disputes' Stripe events, plugged into the webhook intake's handler
registry (treasury/stripe/handlers.py) by DisputesConfig.ready(), in place of its
placeholder that only booked the charge.

`process_event` calls each at most once per event, under the advisory lock of the event's
object; the services then take the charge's lock, after making sure the charge is booked
(`ensure_charge_posted`), whatever order Stripe delivered the events in.
"""

from __future__ import annotations

from disputes import services
from treasury.stripe.client import as_dict, stripe_client
from treasury.stripe.handlers import StripeEvent, register_handler

REFUND_EVENTS = ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")
DISPUTE_EVENTS = (
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
)


def refund_changed(event: StripeEvent) -> str:
    """A refund changed: it is read back from Stripe (the event's copy may be stale or
    overtaken), and ours brought up to it; booked once, as `refund:<re_id>`."""
    refund = services.sync_stripe_refund(stripe_refund_id=event.object_id)
    return f"refund {refund.stripe_refund_id} ({refund.pk}) {refund.status}"


def charge_refunded(event: StripeEvent) -> str:
    """The charge's refunds changed: every refund of the charge is read from Stripe (not the
    event's list, which may be stale or cut short) and each recorded once."""
    found = stripe_client().v1.refunds.list(params={"charge": event.object_id, "limit": 100})
    refunds = [as_dict(r) for r in found.auto_paging_iter()]
    notes = [
        f"{row.stripe_refund_id} {row.status}"
        for row in (services.record_stripe_refund(refund=refund) for refund in refunds)
    ]
    return f"charge {event.object_id} refunds: {', '.join(notes) or 'none'}"[:255]


def dispute_changed(event: StripeEvent) -> str:
    dispute = services.sync_dispute(stripe_dispute_id=event.object_id)
    return f"dispute {dispute.stripe_dispute_id} {dispute.status}"


def register() -> None:
    # replace=True: the intake registered a placeholder for these types (book the charge,
    # say it waits for this module).
    register_handler("charge.refunded", charge_refunded, replace=True)
    for event_type in REFUND_EVENTS:
        register_handler(event_type, refund_changed, replace=True)
    for event_type in DISPUTE_EVENTS:
        register_handler(event_type, dispute_changed, replace=True)
