"""Row-level security: the request/job context, and the policy SQL every app reuses.

PostgreSQL decides what a query may see from two transaction-local settings: `app.user_id`
(a users.id) and `app.role` (`user`, `admin` or `system`). A runtime connection cannot simply
claim them: `set_config('app.role', 'admin', true)` is something any holder of the runtime
role's password could type. The database therefore takes a context only with the
application's proof:

- `app_set_context(user_id, role, proof)` (SECURITY DEFINER) checks the proof, an HMAC of the
  server process's pid, the user and the role under a key that only the application and the
  owner know (the key sits in `treasury_private.context_key`, which the runtime role cannot
  read), then sets the two settings and a seal: an HMAC of the same plus the transaction's
  start time. The proof travels as a bound parameter, never in a query's text, and is
  worthless on another connection;
- policies read the settings through `app_verified_setting()`, which answers '' unless the
  seal matches. A setting typed by hand has no seal; a seal copied from another transaction or
  session does not match. Code running inside a SECURITY DEFINER function of the owner (the
  ledger's checks, the privacy functions) is the system.

The settings are transaction-local (`set_config(..., true)`): a session-level SET would leak to
the next request on a pooled connection. After a commit they read back as '' (not NULL), so
policies compare through nullif(). With no verified context a policy matches no row.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from typing import Any
from uuid import UUID

import psycopg
from django.conf import settings
from django.db import connections, migrations, transaction


class ContextRole(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"
    SYSTEM = "system"


CURRENT_USER_SQL = "nullif((SELECT app_verified_setting('app.user_id')), '')::uuid"
CURRENT_ROLE_SQL = "nullif((SELECT app_verified_setting('app.role')), '')"
PRIVILEGED_SQL = f"coalesce({CURRENT_ROLE_SQL} IN ('admin', 'system'), false)"


# --- The application's proof ---


@cache
def _context_key() -> bytes:
    """The HMAC key shared with the database (RLS_CONTEXT_KEY, by default derived from
    SECRET_KEY, so one secret to keep)."""
    configured = getattr(settings, "RLS_CONTEXT_KEY", "")
    if configured:
        return configured.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"treasury.rls-context-key", "sha256").digest()


def context_key_pads() -> tuple[bytes, bytes]:
    """The key as HMAC-SHA256's inner and outer pads (RFC 2104), which is how the database
    keeps it: PostgreSQL has sha256() built in but no hmac() without pgcrypto."""
    key = _context_key()
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def context_proof(*, backend_pid: int, user_id: str, role: str) -> str:
    """The proof for one server process: useless on any other connection."""
    message = f"context:{backend_pid}:{user_id}:{role}".encode()
    return hmac.new(_context_key(), message, "sha256").hexdigest()


def set_context_statement(
    raw_connection: Any, *, user_id: UUID | str | None, role: ContextRole | str
) -> tuple[str, list[str]]:
    """The SQL expression and parameters that set a context on `raw_connection` (a psycopg
    connection). Run it with server-side binding (a plain `psycopg.Cursor`), so the proof
    never appears in a query's text, where pg_stat_activity would show it."""
    user = str(user_id) if user_id else ""
    role_value = role.value if isinstance(role, ContextRole) else role
    proof = context_proof(
        backend_pid=raw_connection.info.backend_pid, user_id=user, role=role_value
    )
    return "app_set_context(%s, %s, %s)", [user, role_value, proof]


def _execute_bound(using: str, statement: str, params: list[str]) -> tuple[Any, ...] | None:
    """Run `statement` on the alias's connection with server-side binding (Django's own
    cursors bind on the client, which would put the proof into the query's text)."""
    connection = connections[using]
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()


def set_rls_context(
    *, user_id: UUID | str | None, role: ContextRole, using: str = "default"
) -> None:
    """Set the context for the rest of the current transaction (the caller holds one open)."""
    connection = connections[using]
    connection.ensure_connection()
    expression, params = set_context_statement(connection.connection, user_id=user_id, role=role)
    _execute_bound(using, f"SELECT {expression}", params)


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
        raw = connections[using].connection
        expression, params = set_context_statement(raw, user_id=user_id, role=role)
        # One round trip: read the (verified) context to restore, then set the new one (a
        # select list is evaluated left to right).
        previous_user, previous_role, _ = _execute_bound(
            using,
            "SELECT (SELECT app_verified_setting('app.user_id')),"
            f" (SELECT app_verified_setting('app.role')), {expression}",
            params,
        )
        yield
        if connections[using].needs_rollback:
            return  # the block is being rolled back, and the settings with it
        expression, params = set_context_statement(raw, user_id=previous_user, role=previous_role)
        _execute_bound(using, f"SELECT {expression}", params)


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


# --- The verified context (see the module's docstring) ---

VERIFIED_CONTEXT_SQL = """
CREATE SCHEMA IF NOT EXISTS treasury_private;
REVOKE ALL ON SCHEMA treasury_private FROM PUBLIC;
CREATE TABLE IF NOT EXISTS treasury_private.context_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    inner_pad bytea NOT NULL CHECK (length(inner_pad) = 64),
    outer_pad bytea NOT NULL CHECK (length(outer_pad) = 64)
);
REVOKE ALL ON treasury_private.context_key FROM PUBLIC;

-- HMAC-SHA256 (RFC 2104) under the installed key; NULL while no key is installed, so
-- nothing verifies and every policy matches no row. PL/pgSQL, not SQL: a SQL function that
-- cannot be inlined is planned again at every call, and this runs for every statement.
-- (No SET clause: only the SECURITY DEFINER functions below call it, with theirs.)
CREATE OR REPLACE FUNCTION treasury_private.context_mac(message text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    k record;
BEGIN
    SELECT inner_pad, outer_pad INTO k FROM treasury_private.context_key;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN encode(sha256(k.outer_pad || sha256(k.inner_pad || convert_to(message, 'UTF8'))),
                  'hex');
END;
$$;
REVOKE ALL ON FUNCTION treasury_private.context_mac(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION app_set_context(p_user_id text, p_role text, p_proof text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_backend text := pg_backend_pid()::text;
BEGIN
    IF p_user_id = '' AND p_role = '' THEN
        -- Dropping every privilege needs no proof.
        PERFORM set_config('app.user_id', '', true), set_config('app.role', '', true),
                set_config('app.context_seal', '', true);
        RETURN;
    END IF;
    IF p_role NOT IN ('user', 'admin', 'system') THEN
        RAISE EXCEPTION 'unknown context role %', p_role USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_proof IS DISTINCT FROM treasury_private.context_mac(
            'context:' || v_backend || ':' || p_user_id || ':' || p_role) THEN
        RAISE EXCEPTION 'context refused: it does not carry the application''s proof'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM set_config('app.user_id', p_user_id, true), set_config('app.role', p_role, true),
            set_config('app.context_seal', treasury_private.context_mac(
                'seal:' || v_backend || ':' || extract(epoch FROM now())::text || ':'
                || p_user_id || ':' || p_role), true);
END;
$$;

-- Does the context in the settings carry this transaction's seal?
CREATE OR REPLACE FUNCTION app_context_is_verified() RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN coalesce(current_setting('app.context_seal', true) = treasury_private.context_mac(
        'seal:' || pg_backend_pid()::text || ':'
        || extract(epoch FROM now())::text || ':'
        || coalesce(current_setting('app.user_id', true), '') || ':'
        || coalesce(current_setting('app.role', true), '')), false);
END;
$$;

-- The caller's verified role, also from inside a SECURITY DEFINER function (where
-- app_verified_setting('app.role') answers 'system'): for functions that check who calls them.
CREATE OR REPLACE FUNCTION app_caller_role() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN public.app_context_is_verified()
                THEN nullif(current_setting('app.role', true), '') END
$$;

-- What policies read instead of current_setting(): the setting when verified, else ''.
-- Not SECURITY DEFINER on purpose: current_user differs from session_user only inside a
-- SECURITY DEFINER function (the runtime role can neither SET ROLE nor own such a function
-- of another role), i.e. inside the owner's own code, which acts as the system.
CREATE OR REPLACE FUNCTION app_verified_setting(p_name text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_name = 'app.role' AND current_user <> session_user THEN 'system'
        WHEN public.app_context_is_verified()
        THEN coalesce(pg_catalog.current_setting(p_name, true), '')
        ELSE ''
    END
$$;
"""

VERIFIED_CONTEXT_REVERSE = """
DROP FUNCTION IF EXISTS app_verified_setting(text);
DROP FUNCTION IF EXISTS app_caller_role();
DROP FUNCTION IF EXISTS app_context_is_verified();
DROP FUNCTION IF EXISTS app_set_context(text, text, text);
DROP SCHEMA IF EXISTS treasury_private CASCADE;
"""


def verified_context_operation() -> migrations.RunSQL:
    return migrations.RunSQL(VERIFIED_CONTEXT_SQL, VERIFIED_CONTEXT_REVERSE)


def install_context_key(*, using: str) -> None:
    """Put the application's key where the context functions read it (the owner, after every
    migrate; a changed SECRET_KEY or RLS_CONTEXT_KEY takes effect with the next migrate)."""
    inner, outer = context_key_pads()
    with connections[using].cursor() as cursor:
        cursor.execute(
            "INSERT INTO treasury_private.context_key (singleton, inner_pad, outer_pad)"
            " VALUES (true, %s, %s) ON CONFLICT (singleton) DO UPDATE"
            " SET inner_pad = EXCLUDED.inner_pad, outer_pad = EXCLUDED.outer_pad"
            " WHERE (context_key.inner_pad, context_key.outer_pad)"
            " IS DISTINCT FROM (EXCLUDED.inner_pad, EXCLUDED.outer_pad)",
            [inner, outer],
        )
