"""What PostgreSQL refuses, whoever asks: proven with raw SQL under both roles."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.db import DatabaseError, transaction

from ledger.chart import platform_code
from ledger.services import credit, debit, post_transaction
from tests.factories import HostFactory
from tests.rls import set_raw_context
from treasury.rls import ContextRole, rls_context, system_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def charge(usd_accounts):
    a = usd_accounts
    return post_transaction(
        idempotency_key="charge:ch_guarantees",
        event_source="stripe_charge",
        entries=[
            debit(a["stripe"], 1000, "USD"),
            credit(a["host"], 700, "USD"),
            credit(a["artist"], 200, "USD"),
            credit(a["fees"], 100, "USD"),
        ],
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount_cents = amount_cents + 1 WHERE transaction_id = %s",
        "DELETE FROM ledger_entries WHERE transaction_id = %s",
        "UPDATE ledger_transactions SET reference_id = 'x' WHERE id = %s",
        "DELETE FROM ledger_transactions WHERE id = %s",
    ],
)
def test_the_runtime_role_cannot_edit_the_books_even_as_system(charge, raw_sql, statement):
    with system_context(), pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw_sql(statement, [charge.pk])


def test_an_accounts_identity_cannot_change(charge, raw_sql):
    with (
        system_context(),
        pytest.raises(DatabaseError, match="only the balance"),
        transaction.atomic(),
    ):
        raw_sql(
            "UPDATE ledger_accounts SET currency = 'EUR' WHERE code = 'platform:fee_revenue:usd'"
        )


def _commit_postings(conn, statements):
    with conn.cursor() as cur:
        set_raw_context(conn)
        for statement, params in statements:
            cur.execute(statement, params)
    conn.commit()


def test_an_unbalanced_transaction_fails_at_commit(runtime_connection):
    code = f"platform:adjustments:usd-{uuid.uuid4().hex[:8]}"
    key = f"raw:{uuid.uuid4()}"
    with runtime_connection.cursor() as cur:
        set_raw_context(runtime_connection)
        cur.execute(
            "INSERT INTO ledger_accounts (code, shard, kind, currency, balance_cents, created_at)"
            " VALUES (%s, 0, 'expense', 'USD', 0, now()) RETURNING id",
            [code],
        )
        (account_id,) = cur.fetchone()
        cur.execute(
            "INSERT INTO ledger_transactions (idempotency_key, request_hash, event_source,"
            " effective_at, metadata, created_at) VALUES (%s, '', 'raw', now(), '{}', now())"
            " RETURNING id",
            [key],
        )
        (txn_id,) = cur.fetchone()
        for side, amount in (("debit", 100), ("credit", 99)):
            cur.execute(
                "INSERT INTO ledger_entries (transaction_id, account_id, amount_cents, currency,"
                " type, event_source, created_at) VALUES (%s, %s, %s, 'USD', %s, 'raw', now())",
                [txn_id, account_id, amount, side],
            )
        # Each statement succeeded: the check is deferred to COMMIT.
    with pytest.raises(psycopg.errors.CheckViolation, match="unbalanced in USD"):
        runtime_connection.commit()
    with runtime_connection.cursor() as cur:
        set_raw_context(runtime_connection)
        cur.execute("SELECT count(*) FROM ledger_transactions WHERE idempotency_key = %s", [key])
        assert cur.fetchone() == (0,)
    runtime_connection.rollback()


@pytest.mark.parametrize(
    ("amount", "currency", "side", "error"),
    [
        (0, "USD", "debit", "amount_positive"),
        (-1, "USD", "debit", "amount_positive"),
        (1, "EUR", "debit", "does not match account"),
        (1, "USD", "sides", "type_valid"),
    ],
)
def test_the_database_checks_each_entry(charge, raw_sql, amount, currency, side, error):
    with system_context():
        [(account_id,)] = raw_sql(
            # A hot account has shards (more once other tests committed postings): take one.
            "SELECT min(id) FROM ledger_accounts WHERE code = %s",
            [platform_code("fee_revenue", "USD")],
        )
        with pytest.raises(DatabaseError, match=error), transaction.atomic():
            raw_sql(
                "INSERT INTO ledger_entries (transaction_id, account_id, amount_cents, currency,"
                " type, event_source, created_at) VALUES (%s, %s, %s, %s, %s, 'raw', now())",
                [charge.pk, account_id, amount, currency, side],
            )


def test_a_hosts_raw_select_returns_only_the_hosts_entries(charge, raw_sql, host, artist):
    with rls_context(user_id=host.pk, role=ContextRole.USER):
        rows = raw_sql("SELECT user_id, amount_cents FROM ledger_entries")
        transactions = raw_sql("SELECT id FROM ledger_transactions")
        accounts = raw_sql("SELECT code FROM ledger_accounts")
    assert rows == [(host.pk, 700)]
    assert transactions == [(charge.pk,)]
    assert accounts == [(f"user:{host.pk}:payable:usd",)]


def test_without_context_nothing_of_the_books_is_visible(charge, raw_sql):
    assert raw_sql("SELECT count(*) FROM ledger_entries") == [(0,)]
    assert raw_sql("SELECT count(*) FROM ledger_accounts") == [(0,)]


def test_a_user_cannot_write_to_the_books(charge, raw_sql, host):
    other = HostFactory()
    with rls_context(user_id=host.pk, role=ContextRole.USER):
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            raw_sql(
                "INSERT INTO ledger_transactions (idempotency_key, request_hash, event_source,"
                " effective_at, metadata, created_at)"
                " VALUES ('forged', '', 'x', now(), '{}', now())"
            )
        updated = raw_sql(
            "UPDATE ledger_accounts SET balance_cents = 10 WHERE owner_id = %s RETURNING id",
            [host.pk],
        )
    assert updated == []
    assert other.pk != host.pk


def _insert_balanced_posting(cur) -> None:
    cur.execute(
        "INSERT INTO ledger_accounts (code, shard, kind, currency, balance_cents, created_at)"
        " VALUES (%s, 0, 'expense', 'USD', 0, now()) RETURNING id",
        [f"platform:adjustments:owner-{uuid.uuid4().hex[:8]}"],
    )
    (account_id,) = cur.fetchone()
    cur.execute(
        "INSERT INTO ledger_transactions (idempotency_key, request_hash, event_source,"
        " effective_at, metadata, created_at) VALUES (%s, '', 'raw', now(), '{}', now())"
        " RETURNING id",
        [f"owner:{uuid.uuid4()}"],
    )
    (txn_id,) = cur.fetchone()
    for side in ("debit", "credit"):
        cur.execute(
            "INSERT INTO ledger_entries (transaction_id, account_id, amount_cents, currency,"
            " type, event_source, created_at) VALUES (%s, %s, 5, 'USD', %s, 'raw', now())",
            [txn_id, account_id, side],
        )
    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount_cents = 1",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries CASCADE",
        "UPDATE ledger_transactions SET event_source = 'edited'",
        "DELETE FROM ledger_transactions",
    ],
)
def test_the_owner_cannot_edit_the_books_either(owner_connection, statement):
    """The superuser that owns the tables bypasses RLS, but not the triggers."""
    with owner_connection.cursor() as cur:
        _insert_balanced_posting(cur)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            cur.execute(statement)
    owner_connection.rollback()
