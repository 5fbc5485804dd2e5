"""What the treasury does for each Stripe event type: a registry of handlers.

`process_event` (services.py) calls the handler for an event's type at most once per event,
under the advisory lock of the event's object. A handler returns a short note for the
processing record, or raises (the event is then `failed` and retried later). Types with no
handler are stored and acknowledged as `ignored`.

Refunds and disputes: their money flows belong to the refunds module. Until it registers
its own handlers (`register_handler(..., replace=True)` from its AppConfig.ready), those events
only make sure the charge they are about is booked, and say they wait for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from treasury.errors import InvalidInput
from treasury.stripe import services

AWAITING_REFUNDS_MODULE = "awaiting refunds module"


@dataclass(frozen=True)
class StripeEvent:
    """The parts of a Stripe event the handlers use."""

    id: str
    type: str
    object: Mapping[str, Any]
    account: str | None  # the connected account, on Connect events
    created: int | None

    @property
    def object_id(self) -> str:
        # A few objects have no id (a `balance`); the event then stands for itself.
        return str(self.object.get("id") or self.id)

    @classmethod
    def from_payload(cls, event: Mapping[str, Any]) -> StripeEvent:
        data = event.get("data")
        obj = data.get("object") if isinstance(data, Mapping) else None
        if not event.get("id") or not event.get("type") or not isinstance(obj, Mapping):
            raise InvalidInput("not a Stripe event: it needs an id, a type and data.object")
        account = event.get("account")
        return cls(
            id=str(event["id"]),
            type=str(event["type"]),
            object=obj,
            account=str(account) if account else None,
            created=event.get("created"),
        )


EventHandler = Callable[[StripeEvent], str]
_HANDLERS: dict[str, EventHandler] = {}


def register_handler(event_type: str, handler: EventHandler, *, replace: bool = False) -> None:
    """Make `handler` the one for `event_type`. Replacing one must be asked for, so that two
    modules cannot both think they handle a type."""
    if event_type in _HANDLERS and not replace and _HANDLERS[event_type] is not handler:
        raise ValueError(f"{event_type} already has a handler: {_HANDLERS[event_type]!r}")
    _HANDLERS[event_type] = handler


def handles(*event_types: str) -> Callable[[EventHandler], EventHandler]:
    def register(handler: EventHandler) -> EventHandler:
        for event_type in event_types:
            register_handler(event_type, handler)
        return handler

    return register


def handler_for(event_type: str) -> EventHandler | None:
    return _HANDLERS.get(event_type)


def handled_event_types() -> list[str]:
    return sorted(_HANDLERS)


def _id_of(value: Any) -> str | None:
    """A Stripe reference, expanded (an object) or not (its id)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value) if value else None


def _booked(charge_id: str) -> str:
    record = services.ensure_charge_posted(charge_id=charge_id)
    verb = "posted" if getattr(record, "was_posted_now", False) else "already posted"
    return f"charge {charge_id} {verb}: ledger transaction {record.ledger_transaction_id}"


@handles("charge.succeeded")
def charge_succeeded(event: StripeEvent) -> str:
    return _booked(event.object_id)


@handles("payment_intent.succeeded")
def payment_intent_succeeded(event: StripeEvent) -> str:
    charge_id = _id_of(event.object.get("latest_charge"))
    if charge_id is None:
        raise InvalidInput(f"payment intent {event.object_id} succeeded without a charge")
    return _booked(charge_id)


@handles(
    "charge.refunded",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
)
def charge_follow_up(event: StripeEvent) -> str:
    """A refund or dispute: the charge must be in the books before anything is unwound,
    whatever order Stripe delivered the events in."""
    is_charge = event.object.get("object") == "charge"
    charge_id = event.object_id if is_charge else _id_of(event.object.get("charge"))
    if charge_id is None:
        raise InvalidInput(f"{event.type} {event.object_id} names no charge")
    return f"{_booked(charge_id)}; {AWAITING_REFUNDS_MODULE}"


@handles("account.updated")
def account_updated(event: StripeEvent) -> str:
    account = services.sync_connected_account(stripe_account_id=event.object_id)
    if account is None:
        return f"{event.object_id} is not a connected account of ours"
    return f"{event.object_id} onboarding {account.onboarding_status}"
