"""What PostgreSQL guarantees about payouts, whatever the Python: a recipient reads only
their own rows and writes none; money columns and Stripe ids never change; only the
lifecycle's transitions happen; nothing is deleted."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction

from payouts.models import Payout
from payouts.services import initiate_payout
from tests.factories import HostFactory
from treasury.rls import system_context, user_context

from .conftest import DB, earn, onboard

pytestmark = DB


@pytest.fixture
def two_payouts(stripe_settings):
    """A payout each for two hosts (pending: their transfers never run, nothing commits)."""
    payouts = []
    for _ in range(2):
        host = HostFactory()
        onboard(stripe_settings, host)
        earn(stripe_settings, host, 10000)
        payouts.append(
            initiate_payout(
                user=host, amount_cents=1000, currency="USD", method="standard", idempotency_key="k"
            )
        )
    return payouts


def refused(raw_sql, statement, params):
    with pytest.raises(DatabaseError), transaction.atomic():
        raw_sql(statement, params)


def test_a_host_sees_only_its_own_payouts(two_payouts, raw_sql):
    mine, theirs = two_payouts
    with user_context(mine.user):
        rows = raw_sql("SELECT id, user_id FROM payouts")
    assert rows == [(mine.pk, mine.user_id)]
    assert raw_sql("SELECT count(*) FROM payouts") == [(0,)]  # no context: nothing
    with system_context():
        assert {r[0] for r in raw_sql("SELECT id FROM payouts")} >= {mine.pk, theirs.pk}


def test_a_host_writes_no_payout_rows(two_payouts, raw_sql):
    mine, _ = two_payouts
    with user_context(mine.user):
        raw_sql("UPDATE payouts SET status = 'paid' WHERE id = %s", [mine.pk])
        refused(
            raw_sql,
            "INSERT INTO payouts (user_id, amount_cents, fee_cents, currency, method, source,"
            " status, risk_score, risk_signals, idempotency_key, request_hash,"
            " stripe_account_id, stripe_transfer_reversal_id, reversed_cents, failure_code,"
            " failure_reason, initiated_at, updated_at) VALUES (%s, 100, 0, 'USD', 'standard',"
            " 'request', 'paid', 0, '[]', 'forged', '', 'acct', '', 0, '', '', now(), now())",
            [mine.user_id],
        )
    assert Payout.objects.using("default").filter(pk=mine.pk).exists() is False  # no context
    with system_context():
        assert Payout.objects.get(pk=mine.pk).status == "pending"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE payouts SET amount_cents = amount_cents + 1 WHERE id = %s",
        "UPDATE payouts SET currency = 'EUR' WHERE id = %s",
        "UPDATE payouts SET fee_cents = amount_cents WHERE id = %s",
        "UPDATE payouts SET status = 'cancelled' WHERE id = %s",  # pending -> cancelled
        "DELETE FROM payouts WHERE id = %s",
    ],
)
def test_even_the_system_cannot_rewrite_a_payout(two_payouts, raw_sql, statement):
    payout, _ = two_payouts
    with system_context():
        refused(raw_sql, statement, [payout.pk])


def test_a_held_payout_cannot_skip_review_and_transfer(two_payouts, raw_sql):
    payout, _ = two_payouts
    with system_context():
        raw_sql("UPDATE payouts SET status = 'held' WHERE id = %s", [payout.pk])
        refused(raw_sql, "UPDATE payouts SET status = 'paid' WHERE id = %s", [payout.pk])


def test_reversed_cents_only_grows_and_stays_within_the_net(two_payouts, raw_sql):
    payout, _ = two_payouts
    with system_context():
        raw_sql("UPDATE payouts SET reversed_cents = 1000 WHERE id = %s", [payout.pk])
        refused(raw_sql, "UPDATE payouts SET reversed_cents = 1001 WHERE id = %s", [payout.pk])
        refused(raw_sql, "UPDATE payouts SET reversed_cents = 999 WHERE id = %s", [payout.pk])


def test_stripe_ids_are_written_once(two_payouts, raw_sql):
    payout, _ = two_payouts
    with system_context():
        raw_sql("UPDATE payouts SET stripe_transfer_id = 'tr_1' WHERE id = %s", [payout.pk])
        refused(
            raw_sql, "UPDATE payouts SET stripe_transfer_id = 'tr_2' WHERE id = %s", [payout.pk]
        )
        refused(raw_sql, "UPDATE payouts SET stripe_transfer_id = NULL WHERE id = %s", [payout.pk])
