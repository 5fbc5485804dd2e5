from django.db import migrations

from treasury.rls import PRIVILEGED_SQL

TABLES = (
    "monitoring_reconciliation_runs",
    "monitoring_reconciliation_differences",
    "monitoring_verification_runs",
    "alerts",
)

# What the night watch found names money and payouts: admins and the system only.
FORWARD = "".join(
    f"""
    ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
    ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
    CREATE POLICY {table}_privileged ON {table}
        FOR ALL USING ({PRIVILEGED_SQL}) WITH CHECK ({PRIVILEGED_SQL});
    """
    for table in TABLES
)
REVERSE = "".join(
    f"""
    DROP POLICY IF EXISTS {table}_privileged ON {table};
    ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
    ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
    """
    for table in TABLES
)


class Migration(migrations.Migration):
    """Row-level security: runs, differences and alerts are for admins and the system."""

    dependencies = [
        ("monitoring", "0001_initial"),
        ("treasury", "0002_row_level_security"),
    ]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
