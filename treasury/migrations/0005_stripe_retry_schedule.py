from django.db import migrations

SCHEDULE_NAME = "stripe: retry failed events"


def schedule_retries(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.using(schema_editor.connection.alias).get_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "treasury.stripe.tasks.retry_failed_events",
            "schedule_type": "I",  # every `minutes`
            "minutes": 5,
            "repeats": -1,
        },
    )


def unschedule_retries(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.using(schema_editor.connection.alias).filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    """django-q2 runs `retry_failed_events` every five minutes (the Stripe events whose handler
    failed, until STRIPE_EVENT_MAX_ATTEMPTS)."""

    dependencies = [
        ("treasury", "0004_stripe_row_level_security"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(schedule_retries, unschedule_retries)]
