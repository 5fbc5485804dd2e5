from django.db import migrations

from treasury.rls import CURRENT_USER_SQL, append_only_operation, owner_reads_system_writes_sql

# Who reads what; only the services (system context) and admins write.
REFUNDS_RLS = owner_reads_system_writes_sql(
    "refunds",
    visible_to_user=(
        f"buyer_id = {CURRENT_USER_SQL} OR host_id = {CURRENT_USER_SQL}"
        f" OR requested_by_id = {CURRENT_USER_SQL}"
    ),
)
REVERSALS_RLS = owner_reads_system_writes_sql(
    "refund_transfer_reversals", visible_to_user=f"user_id = {CURRENT_USER_SQL}"
)
DISPUTES_RLS = owner_reads_system_writes_sql(
    "disputes", visible_to_user=f"host_id = {CURRENT_USER_SQL}"
)
# A note is visible with its dispute (the subquery is filtered by the disputes' policy).
NOTES_RLS = owner_reads_system_writes_sql(
    "dispute_notes",
    visible_to_user="EXISTS (SELECT 1 FROM disputes d WHERE d.id = dispute_notes.dispute_id)",
)

REFUNDS_GUARD = """
CREATE OR REPLACE FUNCTION refunds_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    charge_cents bigint;
    other_cents bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'refunds are never deleted: they fail'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'INSERT' THEN
        -- The refunds of a charge never exceed it. The charge row is locked so that two
        -- concurrent inserts for one charge are checked one after the other.
        SELECT amount_cents INTO charge_cents FROM stripe_charges
         WHERE stripe_charge_id = NEW.original_charge_id FOR UPDATE;
        SELECT coalesce(sum(amount_cents), 0) INTO other_cents FROM refunds
         WHERE original_charge_id = NEW.original_charge_id AND status <> 'failed';
        IF NEW.status <> 'failed' AND other_cents + NEW.amount_cents > charge_cents THEN
            RAISE EXCEPTION 'refunds of charge % would total % of its %',
                NEW.original_charge_id, other_cents + NEW.amount_cents, charge_cents
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.original_charge_id, NEW.buyer_id, NEW.host_id, NEW.amount_cents, NEW.currency,
        NEW.requested_by_id, NEW.idempotency_key, NEW.request_hash, NEW.platform_refunds_fee,
        NEW.platform_absorbs_stripe_fee, NEW.created_at)
       IS DISTINCT FROM
       (OLD.original_charge_id, OLD.buyer_id, OLD.host_id, OLD.amount_cents, OLD.currency,
        OLD.requested_by_id, OLD.idempotency_key, OLD.request_hash, OLD.platform_refunds_fee,
        OLD.platform_absorbs_stripe_fee, OLD.created_at) THEN
        RAISE EXCEPTION 'refund %: which charge, how much and by whose request never change',
            OLD.id USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (OLD.stripe_refund_id IS NOT NULL
            AND NEW.stripe_refund_id IS DISTINCT FROM OLD.stripe_refund_id)
       OR (OLD.ledger_transaction_id IS NOT NULL
            AND NEW.ledger_transaction_id IS DISTINCT FROM OLD.ledger_transaction_id)
       OR (OLD.failure_transaction_id IS NOT NULL
            AND NEW.failure_transaction_id IS DISTINCT FROM OLD.failure_transaction_id) THEN
        RAISE EXCEPTION 'refund %: its Stripe id and postings are written once', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.status <> OLD.status AND (OLD.status, NEW.status) NOT IN
       (('pending', 'succeeded'), ('pending', 'failed'), ('succeeded', 'failed')) THEN
        RAISE EXCEPTION 'refund %: % -> % is not a refund transition', OLD.id, OLD.status,
            NEW.status USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER refunds_guard BEFORE INSERT OR UPDATE OR DELETE ON refunds
    FOR EACH ROW EXECUTE FUNCTION refunds_guard();
CREATE TRIGGER refunds_no_truncate BEFORE TRUNCATE ON refunds
    FOR EACH STATEMENT EXECUTE FUNCTION treasury_refuse_change();
"""
REFUNDS_GUARD_REVERSE = """
DROP TRIGGER IF EXISTS refunds_no_truncate ON refunds;
DROP TRIGGER IF EXISTS refunds_guard ON refunds;
DROP FUNCTION IF EXISTS refunds_guard();
"""

REVERSALS_GUARD = """
CREATE OR REPLACE FUNCTION refund_transfer_reversals_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'transfer reversals are never deleted'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.refund_id, NEW.user_id, NEW.payout_id, NEW.stripe_transfer_id, NEW.amount_cents,
        NEW.currency, NEW.created_at)
       IS DISTINCT FROM
       (OLD.refund_id, OLD.user_id, OLD.payout_id, OLD.stripe_transfer_id, OLD.amount_cents,
        OLD.currency, OLD.created_at) THEN
        RAISE EXCEPTION 'transfer reversal %: what was asked never changes', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.status <> OLD.status AND OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'transfer reversal %: % is final', OLD.id, OLD.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER refund_transfer_reversals_guard BEFORE UPDATE OR DELETE
    ON refund_transfer_reversals FOR EACH ROW
    EXECUTE FUNCTION refund_transfer_reversals_guard();
CREATE TRIGGER refund_transfer_reversals_no_truncate BEFORE TRUNCATE
    ON refund_transfer_reversals FOR EACH STATEMENT EXECUTE FUNCTION treasury_refuse_change();
"""
REVERSALS_GUARD_REVERSE = """
DROP TRIGGER IF EXISTS refund_transfer_reversals_no_truncate ON refund_transfer_reversals;
DROP TRIGGER IF EXISTS refund_transfer_reversals_guard ON refund_transfer_reversals;
DROP FUNCTION IF EXISTS refund_transfer_reversals_guard();
"""

DISPUTES_GUARD = """
CREATE OR REPLACE FUNCTION disputes_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'disputes are never deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.stripe_dispute_id, NEW.charge_id, NEW.host_id, NEW.currency, NEW.created_at)
       IS DISTINCT FROM
       (OLD.stripe_dispute_id, OLD.charge_id, OLD.host_id, OLD.currency, OLD.created_at) THEN
        RAISE EXCEPTION 'dispute %: which charge it is about never changes', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (OLD.opened_transaction_id IS NOT NULL
            AND NEW.opened_transaction_id IS DISTINCT FROM OLD.opened_transaction_id)
       OR (OLD.closed_transaction_id IS NOT NULL
            AND NEW.closed_transaction_id IS DISTINCT FROM OLD.closed_transaction_id) THEN
        RAISE EXCEPTION 'dispute %: its postings are written once', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.opened_transaction_id IS NOT NULL
       AND (NEW.withdrawn_cents, NEW.fee_cents, NEW.holds, NEW.fee_shares, NEW.loss_bearer,
            NEW.fee_bearer)
           IS DISTINCT FROM
           (OLD.withdrawn_cents, OLD.fee_cents, OLD.holds, OLD.fee_shares, OLD.loss_bearer,
            OLD.fee_bearer) THEN
        RAISE EXCEPTION 'dispute %: what it took and held is fixed once booked', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.status <> OLD.status
       AND OLD.status IN ('won', 'lost', 'warning_closed', 'prevented') THEN
        RAISE EXCEPTION 'dispute %: % is final', OLD.id, OLD.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER disputes_guard BEFORE UPDATE OR DELETE ON disputes
    FOR EACH ROW EXECUTE FUNCTION disputes_guard();
CREATE TRIGGER disputes_no_truncate BEFORE TRUNCATE ON disputes
    FOR EACH STATEMENT EXECUTE FUNCTION treasury_refuse_change();
"""
DISPUTES_GUARD_REVERSE = """
DROP TRIGGER IF EXISTS disputes_no_truncate ON disputes;
DROP TRIGGER IF EXISTS disputes_guard ON disputes;
DROP FUNCTION IF EXISTS disputes_guard();
"""


class Migration(migrations.Migration):
    """What PostgreSQL guarantees about refunds and disputes: row-level security (buyers and
    hosts read their own; only the system and admins write); a charge's refunds never
    exceed it; money columns, Stripe ids and postings never change once written; statuses
    only move forward; nothing is deleted or truncated, and notes are append-only."""

    dependencies = [("disputes", "0001_initial"), ("treasury", "0002_row_level_security")]

    operations = [
        migrations.RunSQL(*REFUNDS_RLS),
        migrations.RunSQL(*REVERSALS_RLS),
        migrations.RunSQL(*DISPUTES_RLS),
        migrations.RunSQL(*NOTES_RLS),
        migrations.RunSQL(REFUNDS_GUARD, REFUNDS_GUARD_REVERSE),
        migrations.RunSQL(REVERSALS_GUARD, REVERSALS_GUARD_REVERSE),
        migrations.RunSQL(DISPUTES_GUARD, DISPUTES_GUARD_REVERSE),
        append_only_operation("dispute_notes"),
    ]
