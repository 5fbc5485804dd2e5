"""Every posting writes its outbox event in the same database transaction."""

from __future__ import annotations

import pytest
from django.db import transaction

from events.models import Event
from ledger.chart import platform_code, user_code
from ledger.models import LedgerTransaction
from ledger.services import credit, debit, post_transaction, reverse_transaction
from treasury.errors import InsufficientFunds
from treasury.rls import system_context

from .conftest import charge, event_of

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


def test_a_posting_writes_one_event_with_its_amounts_per_owner(host):
    posted = charge(host, 1000, idempotency_key="charge:ch_outbox_1")

    event = event_of(posted)
    assert event.type == "ledger.transaction_posted"
    assert event.dispatched_at is None
    payload = event.payload
    assert payload["transaction_id"] == posted.pk
    assert payload["idempotency_key"] == "charge:ch_outbox_1"
    assert payload["event_source"] == "stripe_charge"
    assert payload["metadata"] == {"host_id": str(host.pk)}
    assert sorted(payload["amounts"], key=lambda a: a["owner_id"] or "") == [
        {"owner_id": None, "currency": "USD", "debit_cents": 1000, "credit_cents": 100},
        {"owner_id": str(host.pk), "currency": "USD", "debit_cents": 0, "credit_cents": 900},
    ]
    assert {(e["account"], e["side"], e["amount_cents"]) for e in payload["entries"]} == {
        (platform_code("stripe_balance", "USD"), "debit", 1000),
        (user_code(host.pk, "payable", "USD"), "credit", 900),
        (platform_code("fee_revenue", "USD"), "credit", 100),
    }


def test_a_posting_rolled_back_takes_its_event_with_it(host):
    with system_context():
        events_before = Event.objects.count()
    with pytest.raises(Boom), transaction.atomic():
        charge(host, 1000, idempotency_key="charge:ch_outbox_rolled_back")
        raise Boom

    with system_context():
        assert not LedgerTransaction.objects.filter(
            idempotency_key="charge:ch_outbox_rolled_back"
        ).exists()
        assert Event.objects.count() == events_before


def test_a_refused_posting_writes_no_event(host):
    with system_context():
        events_before = Event.objects.count()
    with pytest.raises(InsufficientFunds):
        post_transaction(
            idempotency_key="payout:outbox:refused",
            entries=[
                debit(user_code(host.pk, "payable", "USD"), 500, "USD", must_not_go_below=0),
                credit(platform_code("payout_clearing", "USD"), 500, "USD"),
            ],
            event_source="payout",
        )
    with system_context():
        assert Event.objects.count() == events_before


def test_a_replayed_posting_writes_no_second_event(host):
    first = charge(host, 1000, idempotency_key="charge:ch_outbox_twice")
    again = charge(host, 1000, idempotency_key="charge:ch_outbox_twice")

    assert again.was_replayed and again.pk == first.pk
    with system_context():
        assert Event.objects.filter(subject=f"ledger_transaction:{first.pk}").count() == 1


def test_reversals_and_adjustments_emit_too(host):
    posted = charge(host, 1000)
    reversal = reverse_transaction(
        transaction=posted, idempotency_key=f"{posted.idempotency_key}:reversal"
    )

    event = event_of(reversal)
    assert event.payload["event_source"] == "stripe_charge.reversal"
    assert {a["currency"] for a in event.payload["amounts"]} == {"USD"}
