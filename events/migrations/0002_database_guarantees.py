from django.db import migrations

from treasury.rls import owner_reads_system_writes_sql

# The outbox is the system's: only the system and admin contexts read or write it.
EVENTS_RLS = owner_reads_system_writes_sql("events", visible_to_user="false")
DELIVERIES_RLS = owner_reads_system_writes_sql("event_deliveries", visible_to_user="false")

EVENTS_GUARD = """
CREATE OR REPLACE FUNCTION events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'events are never deleted: the outbox is append-only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.id, NEW.type, NEW.subject, NEW.payload, NEW.created_at)
       IS DISTINCT FROM (OLD.id, OLD.type, OLD.subject, OLD.payload, OLD.created_at) THEN
        RAISE EXCEPTION 'event %: what happened never changes (append-only)', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.dispatched_at IS NOT NULL
       AND NEW.dispatched_at IS DISTINCT FROM OLD.dispatched_at THEN
        RAISE EXCEPTION 'event %: it was dispatched at %', OLD.id, OLD.dispatched_at
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER events_guard BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_guard();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION treasury_refuse_change();
"""
EVENTS_GUARD_REVERSE = """
DROP TRIGGER IF EXISTS events_no_truncate ON events;
DROP TRIGGER IF EXISTS events_guard ON events;
DROP FUNCTION IF EXISTS events_guard();
"""


class Migration(migrations.Migration):
    """What PostgreSQL guarantees about the outbox: only the system and admins see it; an
    event's type, subject, payload and time never change, and events are never deleted or
    truncated (only `dispatched_at` is set, once)."""

    dependencies = [("events", "0001_initial"), ("treasury", "0002_row_level_security")]

    operations = [
        migrations.RunSQL(*EVENTS_RLS),
        migrations.RunSQL(*DELIVERIES_RLS),
        migrations.RunSQL(EVENTS_GUARD, EVENTS_GUARD_REVERSE),
    ]
