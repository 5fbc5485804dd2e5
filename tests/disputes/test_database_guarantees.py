"""What PostgreSQL itself refuses, whatever the Python above it does, and what row-level
security lets each user see (the tests connect as the runtime role, never a superuser)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction

from disputes.models import DisputeNote, Refund, RefundStatus
from disputes.services import add_dispute_note, request_refund
from tests.factories import AdminFactory, HostFactory, UserFactory
from treasury.rls import ContextRole, rls_context, system_context

from .conftest import DB, charge_record, control, deliver, dispute_of, events_about, sell

pytestmark = DB


@pytest.fixture
def refunded(stripe_settings, django_capture_on_commit_callbacks):
    host, buyer = HostFactory(), UserFactory()
    charge_id = sell(stripe_settings, amount_cents=5000, host=host, buyer=buyer)
    with django_capture_on_commit_callbacks(execute=True):
        made = request_refund(
            actor=buyer, charge_id=charge_id, amount_cents=2000, idempotency_key="k"
        )
    return host, buyer, charge_id, made


def refused(statement) -> str:
    """PostgreSQL's refusal of `statement` ('' when it went through)."""
    try:
        with transaction.atomic():
            statement()
    except DatabaseError as exc:
        return str(exc)
    return ""


def test_the_database_refuses_refunds_beyond_the_charge(refunded):
    host, _buyer, charge_id, _made = refunded
    charge = charge_record(charge_id)

    def too_much() -> None:
        with system_context():
            Refund.objects.create(
                charge=charge,
                host=host,
                amount_cents=3001,
                currency="USD",
                idempotency_key="shell",
                request_hash="",
                platform_refunds_fee=True,
                platform_absorbs_stripe_fee=False,
            )

    assert "refunds of charge" in refused(too_much)


@pytest.mark.parametrize(
    "change",
    [
        {"amount_cents": 1},
        {"currency": "EUR"},
        {"stripe_refund_id": "re_other"},
        {"status": RefundStatus.PENDING},
        {"ledger_transaction": None},
    ],
)
def test_a_refunds_money_ids_and_postings_never_change(refunded, change):
    made = refunded[3]

    def edit() -> None:
        with system_context():
            Refund.objects.filter(pk=made.pk).update(**change)

    assert "refund " in refused(edit)


def test_refunds_and_dispute_notes_are_never_deleted(refunded, stripe_settings, stripe_api):
    host, buyer, _charge_id, made = refunded

    def delete_refund() -> None:
        with system_context():
            Refund.objects.filter(pk=made.pk).delete()

    assert "never deleted" in refused(delete_refund)
    dispute_charge = sell(stripe_settings, amount_cents=3000, host=host, buyer=buyer)
    control(stripe_settings, f"/_standin/charges/{dispute_charge}/dispute", {})
    for event in events_about(stripe_api, dispute_charge):
        deliver(event)
    with system_context():
        note = add_dispute_note(
            actor=AdminFactory(),
            stripe_dispute_id=dispute_of(dispute_charge).stripe_dispute_id,
            body="first",
        )

    def edit_note() -> None:
        with system_context():
            DisputeNote.objects.filter(pk=note.pk).update(body="rewritten")

    assert "append-only" in refused(edit_note)


def test_a_buyer_sees_only_their_own_refunds_and_writes_none(refunded, raw_sql):
    host, buyer, _charge_id, made = refunded
    stranger = UserFactory()

    with rls_context(user_id=buyer.pk, role=ContextRole.USER):
        own = raw_sql("SELECT id FROM refunds")
    with rls_context(user_id=host.pk, role=ContextRole.USER):
        seller = raw_sql("SELECT id FROM refunds")
    with rls_context(user_id=stranger.pk, role=ContextRole.USER):
        none = raw_sql("SELECT id FROM refunds")
    no_context = raw_sql("SELECT id FROM refunds")

    assert own == [(made.pk,)] and seller == [(made.pk,)]
    assert none == [] and no_context == []

    def buyer_writes() -> None:
        with rls_context(user_id=buyer.pk, role=ContextRole.USER):
            raw_sql("UPDATE refunds SET note = 'mine now' WHERE id = %s", [made.pk])
            assert raw_sql("SELECT note FROM refunds WHERE id = %s", [made.pk]) == [("",)]

    buyer_writes()  # RLS: the update matches no row it may write
