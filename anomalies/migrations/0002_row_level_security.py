from django.db import migrations

from treasury.rls import PRIVILEGED_SQL

# Anomalies name users and their money: only admins and the system read or write them.
FORWARD = f"""
    ALTER TABLE anomalies ENABLE ROW LEVEL SECURITY;
    ALTER TABLE anomalies FORCE ROW LEVEL SECURITY;
    CREATE POLICY anomalies_privileged ON anomalies
        FOR ALL USING ({PRIVILEGED_SQL}) WITH CHECK ({PRIVILEGED_SQL});
"""
REVERSE = """
    DROP POLICY IF EXISTS anomalies_privileged ON anomalies;
    ALTER TABLE anomalies NO FORCE ROW LEVEL SECURITY;
    ALTER TABLE anomalies DISABLE ROW LEVEL SECURITY;
"""


class Migration(migrations.Migration):
    """Row-level security: the review queue is for admins and the system only."""

    dependencies = [
        ("anomalies", "0001_initial"),
        ("treasury", "0002_row_level_security"),
    ]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
