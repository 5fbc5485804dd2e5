from django.db import migrations

from events.schedules import ensure_schedules, remove_schedules


def schedule(apps, schema_editor):
    ensure_schedules(apps.get_model("django_q", "Schedule"), schema_editor.connection.alias)


def unschedule(apps, schema_editor):
    remove_schedules(apps.get_model("django_q", "Schedule"), schema_editor.connection.alias)


class Migration(migrations.Migration):
    """django-q2 delivers the outbox every EVENTS_DELIVER_EVERY_MINUTES."""

    dependencies = [
        ("events", "0002_database_guarantees"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
