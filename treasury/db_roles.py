"""The runtime role: created and granted by the owner around every migrate.

The app connects as `treasury_app` (NOSUPERUSER, NOBYPASSRLS, owns no table), so every
row-level policy applies to it. These run from migrate's pre/post signals on the owner alias,
so `make demo`, the tests and a production deploy all get the same grants.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connections
from psycopg import sql


def runtime_role_name() -> str:
    return settings.DATABASES["default"]["USER"] or settings.RUNTIME_DB_ROLE


def ensure_runtime_role(*, using: str) -> None:
    role = runtime_role_name()
    password = settings.DATABASES["default"].get("PASSWORD") or None
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        verb = "ALTER" if cursor.fetchone() else "CREATE"
        statement = sql.SQL(
            "{} ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
        ).format(sql.SQL(verb), sql.Identifier(role))
        if password:
            statement += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
        cursor.execute(statement)


def grant_runtime_privileges(*, using: str) -> None:
    """DML on every table, no DDL, no TRUNCATE; append-only tables refuse changes by trigger."""
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
