from django.db import migrations

from payouts.schedules import ensure_schedules, remove_schedules


def schedule(apps, schema_editor):
    ensure_schedules(apps.get_model("django_q", "Schedule"), schema_editor.connection.alias)


def unschedule(apps, schema_editor):
    remove_schedules(apps.get_model("django_q", "Schedule"), schema_editor.connection.alias)


class Migration(migrations.Migration):
    """django-q2 runs the nightly payouts at PAYOUTS_NIGHTLY_AT (UTC) and resumes unfinished
    payouts every PAYOUTS_RESUME_EVERY_MINUTES (`setup_payout_schedules` re-reads them)."""

    dependencies = [
        ("payouts", "0002_database_guarantees"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
