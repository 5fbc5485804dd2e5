from django.conf import settings
from django.db import migrations

SCHEDULE_NAME = "refunds: resume"


def schedule_resume(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.using(schema_editor.connection.alias).get_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "disputes.tasks.resume_refunds",
            "schedule_type": "I",  # every `minutes`
            "minutes": settings.REFUNDS_RESUME_EVERY_MINUTES,
            "repeats": -1,
        },
    )


def unschedule_resume(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.using(schema_editor.connection.alias).filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    """django-q2 runs `resume_refunds` every REFUNDS_RESUME_EVERY_MINUTES: refunds Stripe never
    answered are sent again (same idempotency key), pending transfer reversals retried."""

    dependencies = [
        ("disputes", "0002_database_guarantees"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule_resume, unschedule_resume)]
