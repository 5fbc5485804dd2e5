from django.db import migrations

from treasury.rls import (
    CURRENT_ROLE_SQL,
    CURRENT_USER_SQL,
    PRIVILEGED_SQL,
    REFUSE_CHANGE_FUNCTION,
    append_only_operation,
    owner_rls_operation,
)

AUDIT_LOG_POLICIES = f"""
    ALTER TABLE audit_logs ENABLE ROW LEVEL SECURITY;
    ALTER TABLE audit_logs FORCE ROW LEVEL SECURITY;
    CREATE POLICY audit_logs_read ON audit_logs FOR SELECT
        USING ({PRIVILEGED_SQL} OR user_id = {CURRENT_USER_SQL});
    -- Anyone acting under a context may add rows about their own acts; the system any.
    CREATE POLICY audit_logs_append ON audit_logs FOR INSERT
        WITH CHECK ({PRIVILEGED_SQL} OR ({CURRENT_ROLE_SQL} IS NOT NULL AND user_id = {CURRENT_USER_SQL}));
"""


class Migration(migrations.Migration):
    dependencies = [("treasury", "0001_initial")]

    operations = [
        REFUSE_CHANGE_FUNCTION,
        owner_rls_operation("users", owner_column="id"),
        migrations.RunSQL(
            AUDIT_LOG_POLICIES,
            """
            DROP POLICY IF EXISTS audit_logs_read ON audit_logs;
            DROP POLICY IF EXISTS audit_logs_append ON audit_logs;
            ALTER TABLE audit_logs NO FORCE ROW LEVEL SECURITY;
            ALTER TABLE audit_logs DISABLE ROW LEVEL SECURITY;
            """,
        ),
        append_only_operation("audit_logs"),
    ]
