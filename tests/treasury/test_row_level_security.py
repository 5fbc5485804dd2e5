from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction

from tests.factories import AdminFactory, UserFactory
from treasury.checks import check_runtime_role
from treasury.models import AuditLog
from treasury.rls import ContextRole, rls_context, system_context
from treasury.services import record_audit

pytestmark = pytest.mark.django_db


def test_runtime_connection_is_not_privileged(raw_sql):
    [(user, is_super, bypass)] = raw_sql(
        "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    )
    assert (user, is_super, bypass) == ("treasury_app", False, False)


def test_a_user_sees_only_their_own_row(raw_sql):
    alice, bob = UserFactory(), UserFactory()
    with rls_context(user_id=alice.pk, role=ContextRole.USER):
        rows = raw_sql("SELECT id, email FROM users")
    assert rows == [(alice.pk, alice.email)]
    with rls_context(user_id=bob.pk, role=ContextRole.USER):
        assert raw_sql("SELECT id FROM users") == [(bob.pk,)]


def test_no_context_sees_no_user(raw_sql):
    UserFactory.create_batch(2)
    assert raw_sql("SELECT count(*) FROM users") == [(0,)]


def test_admin_and_system_see_every_user(raw_sql):
    admin, *others = [AdminFactory(), UserFactory(), UserFactory()]
    with rls_context(user_id=admin.pk, role=ContextRole.ADMIN):
        seen = {row[0] for row in raw_sql("SELECT id FROM users")}
    assert {admin.pk, *(u.pk for u in others)} <= seen
    with system_context():
        assert raw_sql("SELECT count(*) FROM users")[0][0] >= 3


def test_a_user_cannot_update_another_users_row(raw_sql):
    alice, bob = UserFactory(), UserFactory()
    with rls_context(user_id=alice.pk, role=ContextRole.USER):
        raw_sql("UPDATE users SET display_name = 'hijacked' WHERE id = %s", [bob.pk])
    with system_context():
        assert raw_sql("SELECT display_name FROM users WHERE id = %s", [bob.pk]) != [("hijacked",)]


def test_context_is_restored_after_a_block(raw_sql):
    alice = UserFactory()
    with rls_context(user_id=alice.pk, role=ContextRole.USER), system_context():
        pass
    assert raw_sql("SELECT current_setting('app.role', true)") in ([("",)], [(None,)])


@pytest.mark.django_db(databases=["default", "owner"])
def test_system_check_refuses_a_superuser_connection():
    errors = check_runtime_role(using="owner")
    assert {e.id for e in errors} == {"treasury.E001"}
    assert any("is a superuser" in e.msg for e in errors)
    assert any("BYPASSRLS" in e.msg for e in errors)


def test_system_check_accepts_the_runtime_role():
    assert check_runtime_role(using="default") == []


def test_the_runtime_role_cannot_change_audit_rows(raw_sql):
    with system_context():
        entry = record_audit(actor=None, action="test.append_only")
        # No UPDATE/DELETE policy exists, so even the system context matches no row.
        raw_sql("UPDATE audit_logs SET action = 'rewritten' WHERE id = %s", [entry.pk])
        raw_sql("DELETE FROM audit_logs WHERE id = %s", [entry.pk])
        assert AuditLog.objects.get(pk=entry.pk).action == "test.append_only"


@pytest.mark.django_db(databases=["default", "owner"])
def test_audit_log_is_append_only_even_for_the_owner(raw_sql):
    [(entry_id,)] = raw_sql(
        "INSERT INTO audit_logs (action, target_type, target_id, details, created_at)"
        " VALUES ('test.owner', '', '', '{}', now()) RETURNING id",
        using="owner",
    )
    raw_sql("SET CONSTRAINTS ALL IMMEDIATE", using="owner")  # flush the deferred FK checks
    for statement in (
        "UPDATE audit_logs SET action = 'rewritten' WHERE id = %s",
        "DELETE FROM audit_logs WHERE id = %s",
        "TRUNCATE audit_logs",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(using="owner"):
            raw_sql(statement, [entry_id] if "%s" in statement else [], using="owner")
    assert raw_sql("SELECT action FROM audit_logs WHERE id = %s", [entry_id], using="owner") == [
        ("test.owner",)
    ]
