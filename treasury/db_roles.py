"""The runtime role: created and granted by the owner around every migrate.

The app connects as `treasury_app` (NOSUPERUSER, NOBYPASSRLS, owns no table), so every
row-level policy applies to it. These run from migrate's pre/post signals on the owner alias,
so `make demo`, the tests and a production deploy all get the same grants.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, InternalError, ProgrammingError, connections, transaction
from psycopg import sql


def runtime_role_name() -> str:
    return settings.DATABASES["default"]["USER"] or settings.RUNTIME_DB_ROLE


def ensure_runtime_role(*, using: str) -> None:
    """Create the runtime role, or bring its attributes in line; a no-op when they already are.

    Several migrations may run at once against one cluster (parallel test workers): roles
    are cluster-wide, so the role is only touched when something must change, and a
    concurrent creation by another process counts as success.
    """
    role = runtime_role_name()
    password = settings.DATABASES["default"].get("PASSWORD") or None
    attributes = sql.SQL("LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT rolsuper OR rolbypassrls OR rolcreatedb OR rolcreaterole OR NOT rolcanlogin"
            " FROM pg_roles WHERE rolname = %s",
            [role],
        )
        found = cursor.fetchone()
        if found is None:
            statement = sql.SQL("CREATE ROLE {} ").format(sql.Identifier(role)) + attributes
        elif found[0] or password:
            statement = sql.SQL("ALTER ROLE {} ").format(sql.Identifier(role)) + attributes
        else:
            return
        if password:
            statement += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
        try:
            with transaction.atomic(using=using):
                cursor.execute(statement)
        except (IntegrityError, InternalError, ProgrammingError) as exc:
            # "role already exists" / "tuple concurrently updated": another process won.
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            if cursor.fetchone() is None:
                raise exc from None


# The books: the runtime role reads them, and writes them only through the posting
# functions (SECURITY DEFINER, ledger/migrations/0003_posting_function.py).
LEDGER_TABLES = ("ledger_accounts", "ledger_transactions", "ledger_entries")


def grant_runtime_privileges(*, using: str) -> None:
    """DML on every table but the books, no DDL, no TRUNCATE; append-only tables refuse
    changes by trigger. The books are read-only: not even the admin or system context of a
    runtime connection can change a balance, except by posting."""
    role = sql.Identifier(runtime_role_name())
    statements = [
        "GRANT USAGE ON SCHEMA public TO {role}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}",
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}",
    ]
    with connections[using].cursor() as cursor:
        for statement in statements:
            cursor.execute(sql.SQL(statement).format(role=role))
        for table in LEDGER_TABLES:
            cursor.execute(
                sql.SQL("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(
                    sql.Identifier(table), role
                )
            )
            # nextval/setval on the ids: nothing for the runtime role to take or skip.
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
            (sequence,) = cursor.fetchone()
            if sequence:
                cursor.execute(
                    sql.SQL("REVOKE USAGE, UPDATE ON SEQUENCE {} FROM {}").format(
                        sql.SQL(sequence), role
                    )
                )


def runtime_role_problems(*, using: str = "default") -> list[str]:
    """Why the connection `using` could bypass row-level security (empty when it cannot)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        name, is_superuser, bypasses_rls = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM pg_tables"
            " WHERE schemaname = 'public' AND tableowner = current_user"
        )
        (owned_tables,) = cursor.fetchone()
    problems = []
    if is_superuser:
        problems.append(f"role {name} is a superuser")
    if bypasses_rls:
        problems.append(f"role {name} has BYPASSRLS")
    if owned_tables:
        problems.append(f"role {name} owns {owned_tables} tables")
    return problems
