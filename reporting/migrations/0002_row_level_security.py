from django.db import migrations

from treasury.rls import (
    CURRENT_USER_SQL,
    PRIVILEGED_SQL,
    append_only_operation,
    owner_reads_system_writes_sql,
)

# A report is its requester's: they read it, admins read all; only the system (the API's
# services and the jobs, in the system context) writes it.
REPORTS = owner_reads_system_writes_sql("reports", f"user_id = {CURRENT_USER_SQL}")
# An invoice is the host's: they read it, only the system issues it.
INVOICES = owner_reads_system_writes_sql("vat_invoices", f"host_id = {CURRENT_USER_SQL}")
LINES = owner_reads_system_writes_sql("vat_invoice_lines", f"host_id = {CURRENT_USER_SQL}")

COUNTERS_FORWARD = f"""
    ALTER TABLE vat_invoice_counters ENABLE ROW LEVEL SECURITY;
    ALTER TABLE vat_invoice_counters FORCE ROW LEVEL SECURITY;
    CREATE POLICY vat_invoice_counters_system ON vat_invoice_counters
        FOR ALL USING ({PRIVILEGED_SQL}) WITH CHECK ({PRIVILEGED_SQL});
"""
COUNTERS_REVERSE = """
    DROP POLICY IF EXISTS vat_invoice_counters_system ON vat_invoice_counters;
    ALTER TABLE vat_invoice_counters NO FORCE ROW LEVEL SECURITY;
    ALTER TABLE vat_invoice_counters DISABLE ROW LEVEL SECURITY;
"""


class Migration(migrations.Migration):
    """Row-level security for reports and invoices; issued invoices are never edited."""

    dependencies = [
        ("reporting", "0001_initial"),
        ("treasury", "0002_row_level_security"),
    ]

    operations = [
        migrations.RunSQL(*REPORTS),
        migrations.RunSQL(*INVOICES),
        migrations.RunSQL(*LINES),
        migrations.RunSQL(COUNTERS_FORWARD, COUNTERS_REVERSE),
        append_only_operation("vat_invoices"),
        append_only_operation("vat_invoice_lines"),
    ]
