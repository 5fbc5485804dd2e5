from django.db import migrations

from monitoring.schedules import ensure_schedules, remove_schedules


def schedule(apps, schema_editor):
    ensure_schedules(apps.get_model("django_q", "Schedule"), schema_editor.connection.alias)


def unschedule(apps, schema_editor):
    remove_schedules(apps.get_model("django_q", "Schedule"), schema_editor.connection.alias)


class Migration(migrations.Migration):
    """django-q2 verifies the ledger and reconciles the previous day with Stripe every night,
    and runs the alert checks every MONITORING_CHECK_EVERY_MINUTES."""

    dependencies = [
        ("monitoring", "0002_row_level_security"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
