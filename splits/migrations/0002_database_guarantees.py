"""What PostgreSQL itself guarantees about split rules, whatever code or shell writes them.

- Row-level security: an owner sees and writes their own rules; admin and system contexts all.
- The recipients in `rules` are a JSON array of 1..100 {recipient_id, share_bps} objects,
  integer shares of 1..10000 basis points summing to exactly 10000, no recipient twice.
- A version's terms never change and rows are never deleted: an update is a new version,
  a deletion is an archive. Only the flags (is_default, superseded_at, archived_at) and
  updated_at may change in place.
"""

from django.db import migrations

from treasury.rls import owner_rls_operation

# IMMUTABLE so that a CHECK constraint may call it. Each element is tested with CASE,
# because PostgreSQL does not promise to evaluate AND's operands left to right, and a
# cast of a malformed share must not be reached.
RECIPIENTS_CHECK = """
CREATE FUNCTION split_rules_recipients_valid(recipients jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(recipients) <> 'array' THEN false ELSE (
        SELECT count(*) BETWEEN 1 AND 100
           AND coalesce(bool_and(
                   CASE WHEN jsonb_typeof(r) = 'object'
                         AND jsonb_typeof(r -> 'share_bps') = 'number'
                         AND (r ->> 'share_bps') ~ '^[0-9]{1,5}$'
                         AND jsonb_typeof(r -> 'recipient_id') = 'string'
                         AND (r ->> 'recipient_id') ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                        THEN (r ->> 'share_bps')::integer BETWEEN 1 AND 10000
                        ELSE false END), false)
           AND coalesce(sum(CASE WHEN (r ->> 'share_bps') ~ '^[0-9]{1,5}$'
                                 THEN (r ->> 'share_bps')::integer END), 0) = 10000
           AND count(DISTINCT r ->> 'recipient_id') = count(*)
          FROM jsonb_array_elements(recipients) AS r
    ) END
$$;

ALTER TABLE split_rules ADD CONSTRAINT split_rules_recipients_valid
    CHECK (split_rules_recipients_valid(rules));
"""

RECIPIENTS_CHECK_REVERSE = """
ALTER TABLE split_rules DROP CONSTRAINT IF EXISTS split_rules_recipients_valid;
DROP FUNCTION IF EXISTS split_rules_recipients_valid(jsonb);
"""

FROZEN_TERMS = """
CREATE FUNCTION split_rules_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'DELETE on split_rules is not allowed: archive the rule instead'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.id, NEW.owner_id, NEW.name, NEW.rules, NEW.platform_fee_bps,
        NEW.platform_fee_fixed_cents, NEW.fixed_fee_currency, NEW.stripe_fee_bearer,
        NEW.dispute_loss_bearer, NEW.lineage_id, NEW.version, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.owner_id, OLD.name, OLD.rules, OLD.platform_fee_bps,
        OLD.platform_fee_fixed_cents, OLD.fixed_fee_currency, OLD.stripe_fee_bearer,
        OLD.dispute_loss_bearer, OLD.lineage_id, OLD.version, OLD.created_at) THEN
        RAISE EXCEPTION 'split rule % version % is frozen: changes are written as a new version',
            OLD.id, OLD.version USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.superseded_at IS NOT NULL AND NEW.superseded_at IS DISTINCT FROM OLD.superseded_at THEN
        RAISE EXCEPTION 'split rule % was superseded and stays so', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER split_rules_frozen_terms
    BEFORE UPDATE OR DELETE ON split_rules
    FOR EACH ROW EXECUTE FUNCTION split_rules_guard();
"""

FROZEN_TERMS_REVERSE = """
DROP TRIGGER IF EXISTS split_rules_frozen_terms ON split_rules;
DROP FUNCTION IF EXISTS split_rules_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("splits", "0001_initial"), ("treasury", "0002_row_level_security")]

    operations = [
        owner_rls_operation("split_rules", owner_column="owner_id"),
        migrations.RunSQL(RECIPIENTS_CHECK, RECIPIENTS_CHECK_REVERSE),
        migrations.RunSQL(FROZEN_TERMS, FROZEN_TERMS_REVERSE),
    ]
