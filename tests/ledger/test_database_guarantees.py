"""What PostgreSQL refuses, whoever asks: proven with raw SQL as the runtime role (which
writes the books only by calling the posting functions) and as the owner (which can write
them, but not around the triggers short of disabling them)."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from django.db import DatabaseError, connections, transaction

from ledger.chart import platform_code
from ledger.posting import Posting, _prepared
from ledger.selectors import account_balance
from ledger.services import credit, debit, post_transaction
from tests.factories import HostFactory
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


# --- the runtime role reads the books and writes them only by posting ---

ENTRY = (
    "INSERT INTO ledger_entries (transaction_id, account_id, user_id, amount_cents, currency,"
    " type, event_source, created_at)"
    " VALUES (%(txn)s, %(account)s, %(owner)s, 100, 'USD', 'credit', 'raw', now())"
)


@pytest.mark.parametrize("role", [ContextRole.SYSTEM, ContextRole.ADMIN])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_accounts SET balance_cents = balance_cents + 100 WHERE id = %(account)s",
        ENTRY,
        "INSERT INTO ledger_transactions (idempotency_key, request_hash, event_source,"
        " effective_at, metadata, created_at) VALUES ('forged', '', 'raw', now(), '{}', now())",
        "INSERT INTO ledger_accounts (code, shard, owner_id, kind, currency, balance_cents,"
        " created_at) VALUES ('user:' || %(owner)s || ':held:usd', 0, %(owner)s, 'liability',"
        " 'USD', 100, now())",
        "UPDATE ledger_entries SET amount_cents = amount_cents + 1 WHERE transaction_id = %(txn)s",
        "DELETE FROM ledger_entries WHERE transaction_id = %(txn)s",
        "UPDATE ledger_transactions SET reference_id = 'x' WHERE id = %(txn)s",
        "DELETE FROM ledger_transactions WHERE id = %(txn)s",
        "UPDATE ledger_accounts SET currency = 'EUR' WHERE id = %(account)s",
        "SELECT setval(pg_get_serial_sequence('ledger_entries', 'id'), 1)",
    ],
)
def test_the_runtime_role_cannot_write_the_books_even_as_admin_or_system(
    charge, usd_accounts, host, raw_sql, role, statement
):
    """The issue's case first: a runtime connection that claims the admin context used to
    be able to add 100 to a balance with no entry at all."""
    with system_context():
        [(account,)] = raw_sql(
            "SELECT id FROM ledger_accounts WHERE code = %s", [usd_accounts["host"]]
        )
    params = {"txn": charge.pk, "account": account, "owner": str(host.pk)}
    with (
        rls_context(user_id=None, role=role),
        pytest.raises(DatabaseError, match="permission denied"),
        transaction.atomic(),
    ):
        raw_sql(statement, params)
    with system_context():
        assert account_balance(code=usd_accounts["host"]) == 700
        assert charge.entries.count() == 4


def test_the_runtime_role_still_reads_the_books_as_the_system(charge, raw_sql):
    with system_context():
        assert raw_sql(
            "SELECT count(*) FROM ledger_entries WHERE transaction_id = %s", [charge.pk]
        ) == [(4,)]


def _raw_post(raw_sql, posting: Posting) -> list[tuple]:
    prepared = _prepared(posting)
    return raw_sql(
        "SELECT status, transaction_id FROM ledger_post(%s::jsonb, %s::jsonb)",
        [json.dumps(prepared["header"], default=str), json.dumps(prepared["legs"])],
    )


def _sale(host, key: str) -> Posting:
    return Posting(
        idempotency_key=key,
        event_source="raw",
        entries=[
            debit(platform_code("stripe_balance", "USD"), 500, "USD"),
            credit(f"user:{host.pk}:payable:usd", 500, "USD"),
        ],
    )


def test_the_posting_function_is_how_the_runtime_role_writes(raw_sql, host):
    with system_context():
        [(status, txn_id)] = _raw_post(raw_sql, _sale(host, "raw:posted"))
        assert status == "posted"
        assert account_balance(code=f"user:{host.pk}:payable:usd") == 500
        assert raw_sql(
            "SELECT count(*) FROM ledger_entries WHERE transaction_id = %s", [txn_id]
        ) == [(2,)]


@pytest.mark.parametrize(
    "context",
    [
        None,
        {"role": ContextRole.USER, "own": True},
    ],
    ids=["no context", "user context"],
)
@pytest.mark.parametrize(
    "call",
    [
        "SELECT ledger_post(%(header)s::jsonb, %(legs)s::jsonb)",
        "SELECT * FROM ledger_post_batch(jsonb_build_array(jsonb_build_object("
        "'header', %(header)s::jsonb, 'legs', %(legs)s::jsonb)))",
        "SELECT ledger_open_accounts(%(legs)s::jsonb)",
    ],
    ids=["ledger_post", "ledger_post_batch", "ledger_open_accounts"],
)
def test_the_posting_functions_refuse_callers_outside_the_admin_or_system_context(
    raw_sql, host, context, call
):
    prepared = _prepared(_sale(host, "raw:refused"))
    params = {
        "header": json.dumps(prepared["header"], default=str),
        "legs": json.dumps(prepared["legs"]),
    }
    with pytest.raises(DatabaseError) as refused, transaction.atomic():
        if context is None:
            raw_sql(call, params)
        else:
            with rls_context(user_id=host.pk, role=context["role"]):
                raw_sql(call, params)
    assert refused.value.__cause__.sqlstate == "LD403"
    with system_context():
        assert account_balance(code=f"user:{host.pk}:payable:usd") == 0


@pytest.mark.parametrize(
    "call",
    [
        "SELECT ledger_post_many(jsonb_build_array(jsonb_build_object("
        "'header', %(header)s::jsonb, 'legs', %(legs)s::jsonb)))",
        "SELECT ledger_lock_accounts(%(legs)s::jsonb)",
    ],
)
def test_the_posting_functions_parts_have_the_callers_rights_only(raw_sql, host, call):
    """The parts are SECURITY INVOKER: the owner's inside ledger_post, nothing on their own."""

    def adjustment(key: str) -> Posting:  # accounts with no shards: the same rows each time
        return Posting(
            idempotency_key=key,
            event_source="raw",
            entries=[
                debit(platform_code("adjustments", "USD"), 5, "USD"),
                credit(f"user:{host.pk}:payable:usd", 5, "USD"),
            ],
        )

    with system_context():
        _raw_post(raw_sql, adjustment("raw:parts"))  # the accounts exist: straight to writing
        prepared = _prepared(adjustment("raw:parts:2"))
        params = {
            "header": json.dumps(prepared["header"], default=str),
            "legs": json.dumps(prepared["legs"]),
        }
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            raw_sql(call, params)


def test_a_user_cannot_write_to_the_books(charge, raw_sql, host):
    other = HostFactory()
    with rls_context(user_id=host.pk, role=ContextRole.USER):
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            raw_sql(
                "INSERT INTO ledger_transactions (idempotency_key, request_hash, event_source,"
                " effective_at, metadata, created_at)"
                " VALUES ('forged', '', 'x', now(), '{}', now())"
            )
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            raw_sql(
                "UPDATE ledger_accounts SET balance_cents = 10 WHERE owner_id = %s RETURNING id",
                [host.pk],
            )
    assert other.pk != host.pk


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


# --- the owner: every way around the balance check, refused ---


def _account(cur, kind: str = "expense") -> int:
    cur.execute(
        "INSERT INTO ledger_accounts (code, shard, kind, currency, balance_cents, created_at)"
        " VALUES (%s, 0, %s, 'USD', 0, now()) RETURNING id",
        [f"platform:adjustments:owner-{uuid.uuid4().hex[:8]}", kind],
    )
    return cur.fetchone()[0]


def _transaction(cur) -> int:
    cur.execute(
        "INSERT INTO ledger_transactions (idempotency_key, request_hash, event_source,"
        " effective_at, metadata, created_at) VALUES (%s, '', 'raw', now(), '{}', now())"
        " RETURNING id",
        [f"owner:{uuid.uuid4()}"],
    )
    return cur.fetchone()[0]


def _entries(cur, txn_id: int, account_id: int, legs: list[tuple[str, int]]) -> None:
    """The legs, all in one INSERT, as ledger_post writes them."""
    cur.execute(
        "INSERT INTO ledger_entries (transaction_id, account_id, amount_cents, currency, type,"
        " event_source, created_at)"
        " SELECT %s, %s, leg.amount, 'USD', leg.side, 'raw', now()"
        " FROM unnest(%s::text[], %s::bigint[]) AS leg(side, amount)",
        [txn_id, account_id, [side for side, _ in legs], [amount for _, amount in legs]],
    )


def _count(owner_connection, txn_id: int) -> int:
    with owner_connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM ledger_transactions WHERE id = %s", [txn_id])
        return cur.fetchone()[0]


@pytest.mark.parametrize(
    ("legs", "error"),
    [
        ([("debit", 100), ("credit", 99)], "unbalanced in USD: debits 100 <> credits 99"),
        ([("debit", 100)], "has 1 entries; at least 2 are required"),
        ([], "has 0 entries; at least 2 are required"),
    ],
    ids=["unbalanced", "one entry", "no entry"],
)
def test_a_transaction_that_does_not_balance_fails_at_commit(owner_connection, legs, error):
    with owner_connection.cursor() as cur:
        account_id = _account(cur)
        txn_id = _transaction(cur)
        if legs:
            _entries(cur, txn_id, account_id, legs)
        # Each statement succeeded: the check is deferred to COMMIT.
    with pytest.raises(psycopg.errors.CheckViolation, match=error):
        owner_connection.commit()
    assert _count(owner_connection, txn_id) == 0


def test_entries_cannot_join_a_committed_transaction(owner_connection):
    with owner_connection.cursor() as cur:
        account_id = _account(cur)
        txn_id = _transaction(cur)
        _entries(cur, txn_id, account_id, [("debit", 5), ("credit", 5)])
    owner_connection.commit()
    with (
        owner_connection.cursor() as cur,
        pytest.raises(psycopg.errors.CheckViolation, match="already has entries"),
    ):
        # Even balanced: a committed transaction is what it was.
        _entries(cur, txn_id, account_id, [("debit", 7), ("credit", 7)])
    owner_connection.rollback()


def test_entries_cannot_be_added_once_the_check_ran(owner_connection):
    """SET CONSTRAINTS ... IMMEDIATE runs the deferred check early; entries written after it
    would never be checked, so they are refused."""
    with owner_connection.cursor() as cur:
        account_id = _account(cur)
        txn_id = _transaction(cur)
        _entries(cur, txn_id, account_id, [("debit", 5), ("credit", 5)])
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with pytest.raises(psycopg.errors.CheckViolation, match="already has entries"):
            _entries(cur, txn_id, account_id, [("debit", 1)])
    owner_connection.rollback()


def test_entries_one_statement_at_a_time_are_refused(owner_connection):
    with owner_connection.cursor() as cur:
        account_id = _account(cur)
        txn_id = _transaction(cur)
        _entries(cur, txn_id, account_id, [("debit", 5)])
        with pytest.raises(psycopg.errors.CheckViolation, match="already has entries"):
            _entries(cur, txn_id, account_id, [("credit", 5)])
    owner_connection.rollback()


def test_entries_come_after_their_transaction(owner_connection):
    """The foreign key is checked at COMMIT; the entries' own check is not."""
    with owner_connection.cursor() as cur:
        account_id = _account(cur)
        cur.execute("SELECT max(id) + 1000 FROM ledger_transactions")
        future = cur.fetchone()[0] or 1000
        with pytest.raises(psycopg.errors.CheckViolation, match="does not exist"):
            _entries(cur, future, account_id, [("debit", 5), ("credit", 5)])
    owner_connection.rollback()


@pytest.mark.parametrize(
    ("amount", "currency", "side", "owner", "error"),
    [
        (0, "USD", "debit", False, "amount_positive"),
        (-1, "USD", "debit", False, "amount_positive"),
        (1, "EUR", "debit", False, "does not match account"),
        (1, "USD", "sides", False, "type_valid"),
        (1, "USD", "debit", True, "does not match account .* owner"),
    ],
)
def test_the_database_checks_each_entry(owner_connection, amount, currency, side, owner, error):
    with owner_connection.cursor() as cur:
        account_id = _account(cur)  # a platform account: no owner
        txn_id = _transaction(cur)
        with pytest.raises(psycopg.errors.CheckViolation, match=error):
            cur.execute(
                "INSERT INTO ledger_entries (transaction_id, account_id, user_id, amount_cents,"
                " currency, type, event_source, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'raw', now()), (%s, %s, NULL, %s, 'USD',"
                " 'credit', 'raw', now())",
                [
                    txn_id,
                    account_id,
                    uuid.uuid4() if owner else None,
                    amount,
                    currency,
                    side,
                    txn_id,
                    account_id,
                    max(amount, 1),
                ],
            )
    owner_connection.rollback()


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
        account_id = _account(cur)
        _entries(cur, _transaction(cur), account_id, [("debit", 5), ("credit", 5)])
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            cur.execute(statement)
    owner_connection.rollback()


def test_an_accounts_identity_cannot_change(owner_connection):
    with owner_connection.cursor() as cur:
        account_id = _account(cur)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only the balance"):
            cur.execute("UPDATE ledger_accounts SET currency = 'EUR' WHERE id = %s", [account_id])
    owner_connection.rollback()


@pytest.mark.django_db(databases=["default", "owner"])
def test_a_posting_is_checked_once_whatever_its_number_of_entries():
    """Six entries, one balance check (it was seven): PostgreSQL's own count of the calls
    of ledger_assert_balanced in this transaction, the deferred checks run at once."""
    platform = ["stripe_balance", "fee_revenue", "processing_fees", "adjustments"]
    posting = Posting(
        idempotency_key=f"checked-once:{uuid.uuid4()}",
        event_source="test",
        entries=[
            debit(platform_code(platform[0], "USD"), 1000, "USD"),
            credit(platform_code(platform[1], "USD"), 600, "USD"),
            credit(platform_code(platform[1], "USD"), 300, "USD"),
            debit(platform_code(platform[2], "USD"), 59, "USD"),
            credit(platform_code(platform[0], "USD"), 59, "USD"),
            credit(platform_code(platform[3], "USD"), 100, "USD"),
        ],
    )
    prepared = _prepared(posting)
    owner = connections["owner"]
    with owner.cursor() as cur:
        cur.execute("SET LOCAL track_functions = 'pl'")
    with system_context(using="owner"), owner.cursor() as cur:
        cur.execute(
            "SELECT status FROM ledger_post(%s::jsonb, %s::jsonb)",
            [json.dumps(prepared["header"], default=str), json.dumps(prepared["legs"])],
        )
        assert cur.fetchone() == ("posted",)
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute(
            "SELECT pg_stat_get_xact_function_calls('ledger_assert_balanced'::regproc),"
            " pg_stat_get_xact_function_calls('ledger_entries_written_check'::regproc)"
        )
        assert cur.fetchone() == (1, 1)
