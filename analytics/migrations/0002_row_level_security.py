from django.db import migrations

from treasury.rls import CURRENT_USER_SQL, owner_reads_system_writes_sql

# A host or artist reads their own rows (never the platform's totals, user null); the
# system computes them; admins read everything.
DAILY_RLS = owner_reads_system_writes_sql(
    "analytics_daily", visible_to_user=f"user_id = {CURRENT_USER_SQL}"
)
PENDING_RLS = owner_reads_system_writes_sql("analytics_pending_days", visible_to_user="false")


class Migration(migrations.Migration):
    dependencies = [("analytics", "0001_initial"), ("treasury", "0002_row_level_security")]

    operations = [
        migrations.RunSQL(*DAILY_RLS),
        migrations.RunSQL(*PENDING_RLS),
    ]
