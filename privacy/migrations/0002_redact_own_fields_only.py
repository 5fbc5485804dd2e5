from importlib import import_module

from django.db import migrations

# privacy_redact_audit replaced a user's email and display name as substrings of every audit
# row's JSON, platform-wide: a user named "succeeded" scrubbed everyone's history. It now
# rewrites only the rows about that user (target_id = the user: their snapshots) and the rows
# they acted in, and only the values under known personal keys, never other text. It is for
# the erasure alone: the caller must be in the system context and the user deactivated.
#
# audit_logs_redact trusted `treasury.audit_redaction`, which any connection can set with
# set_config. The new row must now also be written by the table's owner, i.e. from inside
# this SECURITY DEFINER function: the same check the append-only trigger makes. (USING stays
# on the flag so that a runtime UPDATE still reaches the trigger and is refused loudly.)
PERSONAL_KEYS = "ARRAY['email', 'display_name', 'name', 'first_name', 'last_name', 'phone']"

FORWARD = f"""
-- `doc` with each non-empty string under one of `keys` (at any depth) replaced by
-- '[redacted]'; with `only_values`, only the strings equal to one of them (lower-cased).
CREATE OR REPLACE FUNCTION privacy_redact_json(doc jsonb, keys text[], only_values text[])
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = public AS $$
DECLARE
    v_key text;
    v_value jsonb;
    v_out jsonb;
BEGIN
    IF doc IS NULL THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(doc) = 'object' THEN
        v_out := '{{}}'::jsonb;
        FOR v_key, v_value IN SELECT key, value FROM jsonb_each(doc) LOOP
            IF v_key = ANY (keys)
               AND jsonb_typeof(v_value) = 'string'
               AND v_value #>> '{{}}' <> ''
               AND (only_values IS NULL OR lower(v_value #>> '{{}}') = ANY (only_values))
            THEN
                v_value := to_jsonb('[redacted]'::text);
            ELSE
                v_value := privacy_redact_json(v_value, keys, only_values);
            END IF;
            v_out := v_out || jsonb_build_object(v_key, v_value);
        END LOOP;
        RETURN v_out;
    ELSIF jsonb_typeof(doc) = 'array' THEN
        SELECT coalesce(jsonb_agg(privacy_redact_json(e.value, keys, only_values)
                                  ORDER BY e.ordinality), '[]'::jsonb)
          INTO v_out FROM jsonb_array_elements(doc) WITH ORDINALITY AS e;
        RETURN v_out;
    END IF;
    RETURN doc;
END;
$$;

DROP POLICY IF EXISTS audit_logs_redact ON audit_logs;
CREATE POLICY audit_logs_redact ON audit_logs FOR UPDATE
    USING (current_setting('treasury.audit_redaction', true) = 'on')
    WITH CHECK (
        current_setting('treasury.audit_redaction', true) = 'on'
        AND current_user = (SELECT pg_get_userbyid(relowner) FROM pg_class
                             WHERE oid = 'public.audit_logs'::regclass)
    );

-- One user's personal data in the audit log, for their erasure: in the rows about them
-- (target_id = the user) every string under a personal key; in the rows they acted in,
-- the strings under a personal key that are their email or display name. Nothing else of
-- any row, and no other row, changes. Writes one `privacy.audit_redact` row (a count only)
-- and returns the number of rows changed. Only for the system context, and only once the
-- user is deactivated (erase_user deactivates first): anyone else gets an exception.
CREATE OR REPLACE FUNCTION privacy_redact_audit(p_user uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    v_keys text[] := {PERSONAL_KEYS};
    v_values text[];
    v_active boolean;
    v_count integer := 0;
    v_rows integer;
    v_prev_user text := coalesce(current_setting('app.user_id', true), '');
    v_prev_role text := coalesce(current_setting('app.role', true), '');
BEGIN
    IF v_prev_role <> 'system' OR app_caller_role() IS DISTINCT FROM 'system' THEN
        RAISE EXCEPTION 'privacy_redact_audit runs only in the system context (the erasure)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT is_active,
           array_remove(ARRAY[lower(email), nullif(lower(btrim(display_name)), '')], NULL)
      INTO v_active, v_values FROM users WHERE id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no user %', p_user USING ERRCODE = 'no_data_found';
    END IF;
    IF v_active THEN
        RAISE EXCEPTION 'user % is active: only a deactivated user''s audit rows are redacted',
            p_user USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM set_config('app.user_id', '', true);
    PERFORM set_config('app.role', 'system', true);
    PERFORM set_config('treasury.audit_redaction', 'on', true);
    WITH redacted AS (
        SELECT id,
               privacy_redact_json("before", v_keys, v_only) AS new_before,
               privacy_redact_json("after", v_keys, v_only) AS new_after,
               privacy_redact_json(details, v_keys, v_only) AS new_details
          FROM (
              SELECT a.*, NULL::text[] AS v_only FROM audit_logs a
               WHERE a.target_id = p_user::text
              UNION ALL
              SELECT a.*, v_values FROM audit_logs a
               WHERE a.user_id = p_user AND a.target_id <> p_user::text
          ) candidates
    )
    UPDATE audit_logs a
       SET "before" = r.new_before, "after" = r.new_after, details = r.new_details
      FROM redacted r
     WHERE a.id = r.id
       AND (a."before", a."after", a.details)
           IS DISTINCT FROM (r.new_before, r.new_after, r.new_details);
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_count := v_rows;
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
REVOKE ALL ON FUNCTION privacy_redact_audit(uuid) FROM PUBLIC;
"""

# Back to 0001's function and policy (its SQL recreates both, and the trigger unchanged).
REVERSE = (
    "DROP POLICY IF EXISTS audit_logs_redact ON audit_logs;\n"
    + import_module("privacy.migrations.0001_initial").AUDIT_REDACTION
    + "\nDROP FUNCTION IF EXISTS privacy_redact_json(jsonb, text[], text[]);"
)


class Migration(migrations.Migration):
    """Erasure touches only the user's own audit fields; the redaction function checks its
    caller; the redaction policy no longer trusts a setting any connection can set."""

    dependencies = [("privacy", "0001_initial"), ("treasury", "0006_verified_context")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
