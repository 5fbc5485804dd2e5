from django.db import migrations

SCHEDULE_NAME = "privacy: retention"

# audit_logs stays append-only for everyone, with one narrow exception: the owner role
# (current_user inside the SECURITY DEFINER function below, never the runtime role) may
# rewrite the JSON columns of a row while `treasury.audit_redaction` is on. Who, what and
# when (user_id, action, target, created_at) can never change.
AUDIT_REDACTION = """
CREATE OR REPLACE FUNCTION audit_logs_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND current_setting('treasury.audit_redaction', true) = 'on'
       AND current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID)
       AND NEW.id = OLD.id
       AND NEW.user_id IS NOT DISTINCT FROM OLD.user_id
       AND NEW.action = OLD.action
       AND NEW.target_type = OLD.target_type
       AND NEW.target_id = OLD.target_id
       AND NEW.created_at = OLD.created_at
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs;
CREATE TRIGGER audit_logs_append_only
    BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_refuse_change();

CREATE POLICY audit_logs_redact ON audit_logs FOR UPDATE
    USING (current_setting('treasury.audit_redaction', true) = 'on')
    WITH CHECK (current_setting('treasury.audit_redaction', true) = 'on');

-- Replace one user's email and display name wherever an audit row's before/after/details
-- carry them, write one audit row saying how many rows were redacted (no PII in it), and
-- return that number. Runs as the owner; the caller's RLS context is put back afterwards.
CREATE OR REPLACE FUNCTION privacy_redact_audit(p_user uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    v_terms text[];
    v_term text;
    v_count integer := 0;
    v_rows integer;
    v_prev_user text := coalesce(current_setting('app.user_id', true), '');
    v_prev_role text := coalesce(current_setting('app.role', true), '');
BEGIN
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.role', 'system', true);
    SELECT array_remove(ARRAY[
               lower(email),
               CASE WHEN length(btrim(display_name)) >= 3 THEN btrim(display_name) END
           ], NULL)
      INTO v_terms FROM users WHERE id = p_user;
    IF v_terms IS NULL THEN
        RAISE EXCEPTION 'no user %', p_user USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM set_config('treasury.audit_redaction', 'on', true);
    FOREACH v_term IN ARRAY v_terms LOOP
        -- The term as it appears inside a JSON string (quotes and backslashes escaped).
        v_term := substr(to_json(v_term)::text, 2, length(to_json(v_term)::text) - 2);
        UPDATE audit_logs SET
            "before" = replace("before"::text, v_term, '[redacted]')::jsonb,
            "after" = replace("after"::text, v_term, '[redacted]')::jsonb,
            details = replace(details::text, v_term, '[redacted]')::jsonb
        WHERE strpos(coalesce("before"::text, '') || coalesce("after"::text, '')
                     || details::text, v_term) > 0;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_count := v_count + v_rows;
    END LOOP;
    PERFORM set_config('treasury.audit_redaction', '', true);
    INSERT INTO audit_logs (user_id, action, target_type, target_id, "before", "after",
                            details, created_at)
    VALUES (NULL, 'privacy.audit_redact', 'treasury.user', p_user::text, NULL, NULL,
            jsonb_build_object('rows_redacted', v_count), now());
    PERFORM set_config('app.user_id', v_prev_user, true);
    PERFORM set_config('app.role', v_prev_role, true);
    RETURN v_count;
END;
$$;
-- Only the runtime role calls it (treasury.db_roles grants EXECUTE after every migrate).
REVOKE ALL ON FUNCTION privacy_redact_audit(uuid) FROM PUBLIC;
"""

AUDIT_REDACTION_REVERSE = """
DROP FUNCTION IF EXISTS privacy_redact_audit(uuid);
DROP POLICY IF EXISTS audit_logs_redact ON audit_logs;
DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs;
DROP FUNCTION IF EXISTS audit_logs_refuse_change();
CREATE TRIGGER audit_logs_append_only
    BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION treasury_refuse_change();
"""


def schedule_retention(apps, schema_editor):
    from django.conf import settings

    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.using(schema_editor.connection.alias).get_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "privacy.tasks.apply_retention",
            "schedule_type": "I",  # every `minutes`
            "minutes": 60 * settings.PRIVACY_RETENTION_EVERY_HOURS,
            "repeats": -1,
        },
    )


def unschedule_retention(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.using(schema_editor.connection.alias).filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    """The audited redaction path for audit_logs (see README, Privacy) and the retention job's
    django-q2 schedule."""

    initial = True
    dependencies = [
        ("treasury", "0005_stripe_retry_schedule"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        # Reversing puts the plain append-only trigger (treasury_refuse_change) back.
        migrations.RunSQL(AUDIT_REDACTION, AUDIT_REDACTION_REVERSE),
        migrations.RunPython(schedule_retention, unschedule_retention),
    ]
