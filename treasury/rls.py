"""Row-level security: the request/job context, and the policy SQL every app reuses.

PostgreSQL decides what a query may see from two transaction-local settings:
`app.user_id` (a users.id) and `app.role` (`user`, `admin` or `system`). They are always set
with `set_config(..., true)`: a session-level SET would leak to the next request that gets the
same pooled connection. After a commit the settings read back as '' (not NULL), so policies
compare through nullif(). With no context at all a policy matches no row.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from uuid import UUID

from django.db import connections, migrations, transaction


class ContextRole(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"
    SYSTEM = "system"


CURRENT_USER_SQL = "nullif(current_setting('app.user_id', true), '')::uuid"
CURRENT_ROLE_SQL = "nullif(current_setting('app.role', true), '')"
PRIVILEGED_SQL = f"coalesce({CURRENT_ROLE_SQL} IN ('admin', 'system'), false)"


def set_rls_context(
    *, user_id: UUID | str | None, role: ContextRole, using: str = "default"
) -> None:
    """Set the context for the rest of the current transaction (the caller holds one open)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT set_config('app.user_id', %s, true), set_config('app.role', %s, true)",
            [str(user_id) if user_id else "", role.value],
        )


def current_rls_context(using: str = "default") -> tuple[str, str]:
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(current_setting('app.user_id', true), ''),"
            " coalesce(current_setting('app.role', true), '')"
        )
        user_id, role = cursor.fetchone()
    return user_id, role


@contextmanager
def rls_context(
    *, user_id: UUID | str | None, role: ContextRole, using: str = "default"
) -> Iterator[None]:
    """Run a block under a context, then put the previous one back.

    The block runs in a transaction (a savepoint when nested). If it raises, rolling the
    savepoint back also restores the settings, since set_config(..., true) is transactional.
    """
    with transaction.atomic(using=using):
        with connections[using].cursor() as cursor:
            # One round trip: read the context to restore, then set the new one (a select
            # list is evaluated left to right).
            cursor.execute(
                "SELECT coalesce(current_setting('app.user_id', true), ''),"
                " coalesce(current_setting('app.role', true), ''),"
                " set_config('app.user_id', %s, true), set_config('app.role', %s, true)",
                [str(user_id) if user_id else "", role.value],
            )
            previous_user, previous_role, _, _ = cursor.fetchone()
        yield
        if connections[using].needs_rollback:
            return  # the block is being rolled back, and the settings with it
        with connections[using].cursor() as cursor:
            cursor.execute(
                "SELECT set_config('app.user_id', %s, true), set_config('app.role', %s, true)",
                [previous_user, previous_role],
            )


def system_context(using: str = "default") -> AbstractContextManager[None]:
    """The context of webhooks, jobs and management commands: sees and writes everything."""
    return rls_context(user_id=None, role=ContextRole.SYSTEM, using=using)


def user_context(user: object, using: str = "default") -> AbstractContextManager[None]:
    """The context a signed-in user's request gets: admins see everything, others their own."""
    role = ContextRole.ADMIN if getattr(user, "is_admin", False) else ContextRole.USER
    return rls_context(user_id=user.pk, role=role, using=using)  # type: ignore[attr-defined]


# --- Policy SQL, one pattern for every table with user data ---


def owner_rls_sql(table: str, owner_column: str = "user_id") -> tuple[str, str]:
    """ENABLE + FORCE RLS on `table`: a user sees and writes rows they own; admin/system all."""
    visible = f"({PRIVILEGED_SQL} OR {owner_column} = {CURRENT_USER_SQL})"
    forward = f"""
        ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
        CREATE POLICY {table}_owner_access ON {table}
            FOR ALL USING {visible} WITH CHECK {visible};
    """
    reverse = f"""
        DROP POLICY IF EXISTS {table}_owner_access ON {table};
        ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
        ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
    """
    return forward, reverse


def owner_reads_system_writes_sql(table: str, visible_to_user: str) -> tuple[str, str]:
    """RLS for books kept by the system: users read what `visible_to_user` (an SQL condition)
    allows; only the admin/system contexts insert or update. The ledger uses this."""
    forward = f"""
        ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
        CREATE POLICY {table}_read ON {table} FOR SELECT
            USING ({PRIVILEGED_SQL} OR ({visible_to_user}));
        CREATE POLICY {table}_insert ON {table} FOR INSERT WITH CHECK ({PRIVILEGED_SQL});
        CREATE POLICY {table}_update ON {table} FOR UPDATE
            USING ({PRIVILEGED_SQL}) WITH CHECK ({PRIVILEGED_SQL});
        -- Visible to the system so that the append-only triggers, not RLS, say no loudly.
        CREATE POLICY {table}_delete ON {table} FOR DELETE USING ({PRIVILEGED_SQL});
    """
    reverse = f"""
        DROP POLICY IF EXISTS {table}_read ON {table};
        DROP POLICY IF EXISTS {table}_insert ON {table};
        DROP POLICY IF EXISTS {table}_update ON {table};
        DROP POLICY IF EXISTS {table}_delete ON {table};
        ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
        ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
    """
    return forward, reverse


def owner_rls_operation(table: str, owner_column: str = "user_id") -> migrations.RunSQL:
    forward, reverse = owner_rls_sql(table, owner_column)
    return migrations.RunSQL(forward, reverse)


def append_only_operation(table: str) -> migrations.RunSQL:
    """Refuse UPDATE, DELETE and TRUNCATE on `table`: corrections are new rows, never edits."""
    return migrations.RunSQL(
        f"""
        CREATE TRIGGER {table}_append_only
            BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION treasury_refuse_change();
        CREATE TRIGGER {table}_no_truncate
            BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION treasury_refuse_change();
        """,
        f"""
        DROP TRIGGER IF EXISTS {table}_append_only ON {table};
        DROP TRIGGER IF EXISTS {table}_no_truncate ON {table};
        """,
    )


REFUSE_CHANGE_FUNCTION = migrations.RunSQL(
    """
    CREATE OR REPLACE FUNCTION treasury_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$;
    """,
    "DROP FUNCTION IF EXISTS treasury_refuse_change();",
)
