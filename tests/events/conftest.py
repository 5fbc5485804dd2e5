from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from events import registry
from events.models import Event, EventDelivery
from events.services import LEDGER_TRANSACTION_POSTED
from ledger.chart import platform_code, user_code
from ledger.models import LedgerTransaction
from ledger.services import credit, debit, post_transaction
from treasury.models import User
from treasury.rls import system_context

TEST_HANDLER = "tests.recorder"


class Recorder:
    """A test handler: records the events it saw; fails while `failures` > 0."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.failures = 0

    def __call__(self, event: Event) -> None:
        self.calls.append(event.pk)
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("the handler's downstream is unavailable")


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    handler = Recorder()
    registry.register(TEST_HANDLER, event_types=[LEDGER_TRANSACTION_POSTED])(handler)
    yield handler
    registry.unregister(TEST_HANDLER)


def charge(host: User, amount_cents: int = 1000, currency: str = "USD", **kwargs: Any) -> Any:
    """A ledger-only charge: the host gets 90%, the platform 10%."""
    fee = amount_cents // 10
    return post_transaction(
        idempotency_key=kwargs.pop("idempotency_key", f"charge:ch_{uuid.uuid4().hex}"),
        entries=[
            debit(platform_code("stripe_balance", currency), amount_cents, currency),
            credit(user_code(host.pk, "payable", currency), amount_cents - fee, currency),
            credit(platform_code("fee_revenue", currency), fee, currency),
        ],
        event_source="stripe_charge",
        metadata={"host_id": str(host.pk)},
        **kwargs,
    )


def event_of(posted: LedgerTransaction) -> Event:
    with system_context():
        return Event.objects.get(subject=f"ledger_transaction:{posted.pk}")


def delivery_of(posted: LedgerTransaction, handler: str = TEST_HANDLER) -> EventDelivery:
    with system_context():
        return EventDelivery.objects.get(
            event__subject=f"ledger_transaction:{posted.pk}", handler=handler
        )
