"""The database stops taking the runtime connection's word for who is asking.

1. The verified context (treasury/rls.py): the functions exist from 0001 on a fresh database;
   on one migrated before, they are created here, and every existing policy is rewritten to
   read `app_verified_setting(...)` instead of `current_setting(...)`, which any runtime
   connection could set for itself.
   (The ledger's checks read every row as SECURITY DEFINER functions of the owner: ledger
   0003. Inside those, app_verified_setting('app.role') answers 'system'.)
2. `users.role`, `is_staff` and `is_superuser` change only under the admin or system context.
3. Every table the runtime role can read and that holds user data gets row-level security
   (tests/treasury/test_table_coverage.py lists the rest, each with its reason).
"""

from django.db import migrations

from treasury.rls import PRIVILEGED_SQL, owner_rls_sql, verified_context_operation

REWRITE_POLICIES = r"""
DO $$
DECLARE
    p record;
    v_pattern constant text := 'current_setting\(''app\.(user_id|role)''::text, true\)';
    v_verified constant text := '(SELECT app_verified_setting(''app.\1''::text))';
BEGIN
    FOR p IN SELECT schemaname, tablename, policyname, qual, with_check FROM pg_policies
              WHERE schemaname = 'public'
                AND (qual ~ v_pattern OR with_check ~ v_pattern)
    LOOP
        EXECUTE format('ALTER POLICY %I ON %I.%I', p.policyname, p.schemaname, p.tablename)
            || coalesce(' USING (' || regexp_replace(p.qual, v_pattern, v_verified, 'g') || ')', '')
            || coalesce(' WITH CHECK ('
                        || regexp_replace(p.with_check, v_pattern, v_verified, 'g') || ')', '');
    END LOOP;
END;
$$;
"""

USERS_PRIVILEGES_GUARD = f"""
CREATE OR REPLACE FUNCTION users_guard_privileges() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF {PRIVILEGED_SQL} THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        RAISE EXCEPTION 'users are created by the system' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.role, NEW.is_staff, NEW.is_superuser)
       IS DISTINCT FROM (OLD.role, OLD.is_staff, OLD.is_superuser) THEN
        RAISE EXCEPTION 'role, is_staff and is_superuser change only under the admin context'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER users_guard_privileges
    BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_guard_privileges();
"""

USERS_PRIVILEGES_GUARD_REVERSE = """
DROP TRIGGER IF EXISTS users_guard_privileges ON users;
DROP FUNCTION IF EXISTS users_guard_privileges();
"""

# Rows of these belong to one user (their column): the user reads their own, the system all.
OWNED_TABLES = {
    "django_admin_log": "user_id",
    "users_groups": "user_id",
    "users_user_permissions": "user_id",
    "guardian_userobjectpermission": "user_id",
}


def privileged_only_sql(table: str) -> tuple[str, str]:
    """RLS for records only the system and admins touch (Stripe's copies, webhook bodies,
    sessions): no user context sees or writes a row."""
    forward = f"""
        ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
        CREATE POLICY {table}_privileged ON {table}
            FOR ALL USING ({PRIVILEGED_SQL}) WITH CHECK ({PRIVILEGED_SQL});
    """
    reverse = f"""
        DROP POLICY IF EXISTS {table}_privileged ON {table};
        ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
        ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
    """
    return forward, reverse


def cover_tables(apps, schema_editor):
    """RLS on every djstripe table (Stripe's copies of charges, customers, events and webhook
    bodies: personal data), the treasury's event-processing log and the sessions."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity"
            " AND (left(c.relname, 9) = 'djstripe_'"
            "      OR c.relname IN ('stripe_event_processing', 'django_session'))"
        )
        tables = [name for (name,) in cursor.fetchall()]
        statements = [privileged_only_sql(table)[0] for table in tables]
        statements += [owner_rls_sql(table, column)[0] for table, column in OWNED_TABLES.items()]
        for statement in _split(statements):
            cursor.execute(statement)


def uncover_tables(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_policies WHERE schemaname = 'public'"
            " AND policyname = tablename || '_privileged'"
        )
        statements = [privileged_only_sql(table)[1] for (table,) in cursor.fetchall()]
        statements += [owner_rls_sql(table, column)[1] for table, column in OWNED_TABLES.items()]
        for statement in _split(statements):
            cursor.execute(statement)


def _split(scripts: list[str]) -> list[str]:
    """One statement per execute (the scripts above hold no semicolon inside a statement)."""
    return [part.strip() for script in scripts for part in script.split(";") if part.strip()]


class Migration(migrations.Migration):
    dependencies = [
        ("treasury", "0005_stripe_retry_schedule"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("sessions", "0001_initial"),
        ("guardian", "0003_remove_groupobjectpermission_guardian_gr_content_ae6aec_idx_and_more"),
        ("djstripe", "0003_2_11"),
        ("analytics", "0003_schedules"),
        ("anomalies", "0003_schedules"),
        ("disputes", "0003_resume_schedule"),
        ("events", "0003_schedules"),
        ("ledger", "0002_database_guarantees"),
        ("monitoring", "0003_schedules"),
        ("overrides", "0001_initial"),
        ("payouts", "0004_risk_score_in_basis_points"),
        ("privacy", "0001_initial"),
        ("reporting", "0002_row_level_security"),
        ("splits", "0002_database_guarantees"),
    ]

    operations = [
        verified_context_operation(),
        migrations.RunSQL(REWRITE_POLICIES, migrations.RunSQL.noop),
        migrations.RunSQL(USERS_PRIVILEGES_GUARD, USERS_PRIVILEGES_GUARD_REVERSE),
        migrations.RunPython(cover_tables, uncover_tables),
    ]
