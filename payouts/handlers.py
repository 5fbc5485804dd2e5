"""The payouts' Stripe events, plugged into the webhook intake's handler registry
(treasury/stripe/handlers.py) by PayoutsConfig.ready().

`process_event` calls each at most once per event, under the advisory locks of the
connected account and the event's object. Events about payouts and transfers that are not
the treasury's (a connected account's own automatic payouts) are acknowledged with a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payouts import services
from payouts.models import Payout
from treasury.errors import Conflict
from treasury.rls import system_context
from treasury.stripe.handlers import StripeEvent, register_handler


def _payout_of(obj: Mapping[str, Any], *, id_field: str) -> Payout | None:
    """The treasury payout a Stripe payout or transfer is about: by the id we recorded, else
    by the payout id in its metadata (an answer we never got to record)."""
    with system_context():
        found = Payout.objects.filter(**{id_field: obj.get("id")}).first()
        if found is not None:
            return found
        payout_id = str((obj.get("metadata") or {}).get("payout_id") or "")
        return Payout.objects.filter(pk=int(payout_id)).first() if payout_id.isdigit() else None


def _check_account(payout: Payout, event: StripeEvent) -> None:
    if event.account and event.account != payout.stripe_account_id:
        raise Conflict(
            f"{event.type} {event.object_id} came from {event.account}, but payout {payout.pk}"
            f" went to {payout.stripe_account_id}"
        )


def payout_changed(event: StripeEvent) -> str:
    """payout.paid or payout.failed: the payout is read back from Stripe and the treasury's
    payout brought to its state, so the event's own status (stale, or overtaken by a later
    one) decides nothing, and paid-then-failed ends as failed-then-paid does."""
    payout = _payout_of(event.object, id_field="stripe_payout_id")
    if payout is None:
        return f"{event.object_id} is not a treasury payout"
    _check_account(payout, event)
    synced = services.sync_connected_payout(payout_id=payout.pk, stripe_payout_id=event.object_id)
    note = f"payout {synced.pk} {synced.status}"
    return f"{note}: {synced.failure_code}" if synced.failure_code else note


def transfer_reversed(event: StripeEvent) -> str:
    """The transfer is read back with its reversals; each is booked once, by its own amount
    (the event's cumulative `amount_reversed` is only a hint)."""
    payout = _payout_of(event.object, id_field="stripe_transfer_id")
    if payout is None:
        return f"{event.object_id} is not a treasury payout transfer"
    updated = services.sync_transfer_reversals(payout_id=payout.pk, transfer_id=event.object_id)
    return f"payout {updated.pk} {updated.status}, {updated.reversed_cents} reversed"


HANDLERS = {
    "payout.paid": payout_changed,
    "payout.failed": payout_changed,
    "transfer.reversed": transfer_reversed,
}


def register() -> None:
    for event_type, handler in HANDLERS.items():
        register_handler(event_type, handler)
