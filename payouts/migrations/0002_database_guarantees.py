from django.db import migrations

from treasury.rls import CURRENT_USER_SQL, owner_reads_system_writes_sql

# A recipient reads their own payouts; only the services (system context) and admins write.
RLS_FORWARD, RLS_REVERSE = owner_reads_system_writes_sql(
    "payouts", visible_to_user=f"user_id = {CURRENT_USER_SQL}"
)

# What a payout may become. (paid -> failed is allowed but unused: a reversal after payment
# keeps the payout paid, with reversed_cents.)
ALLOWED_TRANSITIONS = [
    ("held", "pending"),
    ("held", "cancelled"),
    ("pending", "held"),
    ("pending", "in_flight"),
    ("pending", "paid"),
    ("pending", "failed"),
    ("in_flight", "paid"),
    ("in_flight", "failed"),
    ("paid", "failed"),
]
_ALLOWED_SQL = ", ".join(f"('{a}', '{b}')" for a, b in ALLOWED_TRANSITIONS)

GUARD = f"""
CREATE OR REPLACE FUNCTION payouts_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'payouts are never deleted: they are cancelled or fail'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.user_id, NEW.amount_cents, NEW.fee_cents, NEW.currency, NEW.method, NEW.source,
        NEW.idempotency_key, NEW.request_hash, NEW.initiated_at, NEW.stripe_account_id)
       IS DISTINCT FROM
       (OLD.user_id, OLD.amount_cents, OLD.fee_cents, OLD.currency, OLD.method, OLD.source,
        OLD.idempotency_key, OLD.request_hash, OLD.initiated_at, OLD.stripe_account_id) THEN
        RAISE EXCEPTION 'payout %: who, how much and how never change once initiated', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (OLD.ledger_transaction_id IS NOT NULL
            AND NEW.ledger_transaction_id IS DISTINCT FROM OLD.ledger_transaction_id)
       OR (OLD.stripe_transfer_id IS NOT NULL
            AND NEW.stripe_transfer_id IS DISTINCT FROM OLD.stripe_transfer_id)
       OR (OLD.stripe_payout_id IS NOT NULL
            AND NEW.stripe_payout_id IS DISTINCT FROM OLD.stripe_payout_id) THEN
        RAISE EXCEPTION 'payout %: its reservation and Stripe ids are written once', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.reversed_cents < OLD.reversed_cents THEN
        RAISE EXCEPTION 'payout %: reversed_cents only grows', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status <> OLD.status AND (OLD.status, NEW.status) NOT IN ({_ALLOWED_SQL}) THEN
        RAISE EXCEPTION 'payout %: % -> % is not a payout transition', OLD.id, OLD.status,
            NEW.status USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER payouts_guard BEFORE UPDATE OR DELETE ON payouts
    FOR EACH ROW EXECUTE FUNCTION payouts_guard();
CREATE TRIGGER payouts_no_truncate BEFORE TRUNCATE ON payouts
    FOR EACH STATEMENT EXECUTE FUNCTION treasury_refuse_change();
"""
GUARD_REVERSE = """
DROP TRIGGER IF EXISTS payouts_no_truncate ON payouts;
DROP TRIGGER IF EXISTS payouts_guard ON payouts;
DROP FUNCTION IF EXISTS payouts_guard();
"""


class Migration(migrations.Migration):
    """What PostgreSQL guarantees about payouts: row-level security (a recipient reads their
    own, only the system and admins write), immutable money columns, Stripe ids written once,
    only the status transitions of the payout lifecycle, and no DELETE or TRUNCATE."""

    dependencies = [("payouts", "0001_initial"), ("treasury", "0002_row_level_security")]

    operations = [
        migrations.RunSQL(RLS_FORWARD, RLS_REVERSE),
        migrations.RunSQL(GUARD, GUARD_REVERSE),
    ]
