"""The database does not take the runtime connection's word for who is asking.

Everything here is raw SQL as the runtime role, as someone holding its password would type
it: a context set by hand sees nothing and changes nothing; only the application's proof
(treasury/rls.py) opens rows.
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import DatabaseError, connections, transaction

from ledger.chart import platform_code
from ledger.services import credit, debit, post_transaction
from tests.factories import HostFactory, UserFactory
from tests.rls import set_raw_context
from treasury.models import Role, User
from treasury.rls import ContextRole, context_proof, rls_context, system_context

pytestmark = pytest.mark.django_db

FORGERIES = [
    "SELECT set_config('app.role', 'admin', true), set_config('app.user_id', '', true)",
    "SELECT set_config('app.role', 'system', false)",
    "SET LOCAL app.role = 'system'",
    "SET app.role = 'admin'",
]


@pytest.fixture
def posted(host: User) -> None:
    with system_context():
        post_transaction(
            idempotency_key=f"test:trust:{host.pk}",
            event_source="test",
            entries=[
                debit(platform_code("stripe_balance", "USD"), 1000, "USD"),
                credit(platform_code("fee_revenue", "USD"), 1000, "USD"),
            ],
        )


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_context_set_by_hand_sees_nothing(posted, raw_sql, forgery):
    with transaction.atomic():
        raw_sql(forgery)
        assert raw_sql("SELECT current_setting('app.role')")[0][0] in ("admin", "system")
        assert raw_sql("SELECT count(*) FROM ledger_entries") == [(0,)]
        assert raw_sql("SELECT count(*) FROM users") == [(0,)]
        transaction.set_rollback(True)  # a session-level SET is undone with the transaction


def test_a_forged_admin_cannot_change_a_balance(posted, raw_sql):
    code = platform_code("fee_revenue", "USD")
    with system_context():
        before = raw_sql("SELECT sum(balance_cents) FROM ledger_accounts WHERE code = %s", [code])
    # The books: the runtime role has no UPDATE on them at all (only ledger_post writes).
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
        raw_sql("SELECT set_config('app.role', 'admin', true)")
        raw_sql("UPDATE ledger_accounts SET balance_cents = balance_cents + 100")
    # The posting function does not believe the claim either.
    with pytest.raises(DatabaseError, match="admin or system"), transaction.atomic():
        raw_sql("SELECT set_config('app.role', 'system', true)")
        raw_sql(
            "SELECT ledger_open_accounts(%s::jsonb)",
            ['[{"code": "platform:forged:usd", "shard": 0, "kind": "asset", "currency": "USD"}]'],
        )
    with transaction.atomic():
        raw_sql("SELECT set_config('app.role', 'admin', true)")
        raw_sql("UPDATE users SET role = 'admin', is_staff = true")  # sees no row
    with system_context():
        after = raw_sql("SELECT sum(balance_cents) FROM ledger_accounts WHERE code = %s", [code])
        assert not User.objects.filter(is_staff=True, role=Role.ADMIN).exists()
    assert after == before


def test_the_proof_is_checked(raw_sql):
    with pytest.raises(DatabaseError, match="proof"), transaction.atomic():
        raw_sql("SELECT app_set_context('', 'system', 'not-a-proof')")


def test_a_proof_for_another_connection_is_refused(raw_sql, runtime_connection):
    # Valid for the other server process: worthless on this one.
    proof = context_proof(
        backend_pid=runtime_connection.info.backend_pid, user_id="", role="system"
    )
    with pytest.raises(DatabaseError, match="proof"), transaction.atomic():
        raw_sql("SELECT app_set_context('', 'system', %s)", [proof])


def test_a_seal_copied_into_a_later_transaction_is_worthless(runtime_connection):
    conn = runtime_connection
    verified_role = "SELECT app_verified_setting('app.role')"
    set_raw_context(conn)
    [(seal, role)] = conn.execute(
        f"SELECT current_setting('app.context_seal'), ({verified_role})"
    ).fetchall()
    conn.commit()
    assert role == "system"  # the application's context is believed
    conn.execute(
        "SELECT set_config('app.role', 'system', true), set_config('app.user_id', '', true),"
        " set_config('app.context_seal', %s, true)",
        [seal],
    )
    assert conn.execute(verified_role).fetchall() == [("",)]
    conn.rollback()


def test_the_key_is_out_of_the_runtime_roles_reach(raw_sql):
    for statement in (
        "SELECT * FROM treasury_private.context_key",
        "SELECT treasury_private.context_mac('context:1::system')",
    ):
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            raw_sql(statement)


def test_the_application_context_is_not_visible_in_query_text(runtime_connection):
    """The proof is a bound parameter: another session of the runtime role reading
    pg_stat_activity sees `$3`, never the proof."""
    with system_context():
        pid = connections["default"].connection.info.backend_pid
        proof = context_proof(backend_pid=pid, user_id="", role="system")
        [(query,)] = runtime_connection.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchall()
    assert proof not in query


def test_a_user_cannot_make_themselves_admin(raw_sql):
    user = UserFactory()
    with rls_context(user_id=user.pk, role=ContextRole.USER):
        raw_sql("UPDATE users SET display_name = 'Renamed' WHERE id = %s", [user.pk])
        for column, value in (("role", "admin"), ("is_staff", True), ("is_superuser", True)):
            with pytest.raises(DatabaseError, match="admin context"), transaction.atomic():
                raw_sql(f"UPDATE users SET {column} = %s WHERE id = %s", [value, user.pk])
    with system_context():
        user.refresh_from_db()
    assert (user.display_name, user.role, user.is_staff, user.is_superuser) == (
        "Renamed",
        Role.BUYER,
        False,
        False,
    )


def test_an_admin_context_may_change_a_role(raw_sql, admin_user):
    host = HostFactory()
    with rls_context(user_id=admin_user.pk, role=ContextRole.ADMIN):
        raw_sql("UPDATE users SET is_staff = true WHERE id = %s", [host.pk])
    with system_context():
        host.refresh_from_db()
    assert host.is_staff


def test_a_direct_connection_without_the_key_has_nothing(posted, runtime_connection):
    """A plain psycopg session (what a leaked password gives) under every forgery."""
    conn = runtime_connection
    for forgery in FORGERIES:
        conn.execute(forgery)
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM ledger_accounts), (SELECT count(*) FROM users),"
            " (SELECT count(*) FROM audit_logs)"
        ).fetchone()
        assert counts == (0, 0, 0), forgery
        conn.rollback()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT app_set_context('', 'admin', repeat('0', 64))")
    conn.rollback()
