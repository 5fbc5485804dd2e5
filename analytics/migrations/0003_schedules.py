from django.db import migrations

from analytics.schedules import ensure_schedules, remove_schedules


def schedule(apps, schema_editor):
    ensure_schedules(apps.get_model("django_q", "Schedule"), schema_editor.connection.alias)


def unschedule(apps, schema_editor):
    remove_schedules(apps.get_model("django_q", "Schedule"), schema_editor.connection.alias)


class Migration(migrations.Migration):
    """django-q2 recomputes the days the ledger changed every ANALYTICS_REFRESH_EVERY_MINUTES,
    and yesterday and today once a day."""

    dependencies = [
        ("analytics", "0002_row_level_security"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
