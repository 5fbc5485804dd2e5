"""What PostgreSQL itself guarantees about the books, whatever code or shell writes to them."""

from django.db import migrations

from treasury.rls import CURRENT_USER_SQL, append_only_operation, owner_reads_system_writes_sql

# The checks below must see every row, whatever context the writer left behind (a context
# block may have been restored before COMMIT runs the deferred check), so they read as the
# system and put the caller's role back afterwards.
BALANCED_CHECK = """
CREATE FUNCTION ledger_assert_balanced(txn_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    caller_role text := current_setting('app.role', true);
    entry_count bigint;
    unbalanced record;
BEGIN
    PERFORM set_config('app.role', 'system', true);
    SELECT count(*) INTO entry_count FROM ledger_entries WHERE transaction_id = txn_id;
    SELECT currency,
           sum(CASE WHEN type = 'debit' THEN amount_cents ELSE 0 END) AS debits,
           sum(CASE WHEN type = 'credit' THEN amount_cents ELSE 0 END) AS credits
      INTO unbalanced
      FROM ledger_entries
     WHERE transaction_id = txn_id
     GROUP BY currency
    HAVING sum(CASE WHEN type = 'debit' THEN amount_cents ELSE -amount_cents END) <> 0
     LIMIT 1;
    PERFORM set_config('app.role', coalesce(caller_role, ''), true);
    IF entry_count < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has % entries; at least 2 are required',
            txn_id, entry_count USING ERRCODE = 'check_violation';
    END IF;
    IF unbalanced.currency IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced in %: debits % <> credits %',
            txn_id, unbalanced.currency, unbalanced.debits, unbalanced.credits
            USING ERRCODE = 'check_violation';
    END IF;
END;
$$;

CREATE FUNCTION ledger_entries_balanced_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_balanced(NEW.transaction_id);
    RETURN NULL;
END;
$$;

CREATE FUNCTION ledger_transactions_balanced_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_balanced(NEW.id);
    RETURN NULL;
END;
$$;

-- Checked at COMMIT: a transaction is written entry by entry, balanced only once complete.
CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_balanced_trigger();
CREATE CONSTRAINT TRIGGER ledger_transactions_balanced
    AFTER INSERT ON ledger_transactions DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_transactions_balanced_trigger();
"""

BALANCED_CHECK_REVERSE = """
DROP TRIGGER IF EXISTS ledger_entries_balanced ON ledger_entries;
DROP TRIGGER IF EXISTS ledger_transactions_balanced ON ledger_transactions;
DROP FUNCTION IF EXISTS ledger_entries_balanced_trigger();
DROP FUNCTION IF EXISTS ledger_transactions_balanced_trigger();
DROP FUNCTION IF EXISTS ledger_assert_balanced(bigint);
"""

ENTRY_MATCHES_ACCOUNT = """
CREATE FUNCTION ledger_entry_matches_account() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    caller_role text := current_setting('app.role', true);
    account_currency text;
    account_owner uuid;
BEGIN
    PERFORM set_config('app.role', 'system', true);
    SELECT currency, owner_id INTO account_currency, account_owner
      FROM ledger_accounts WHERE id = NEW.account_id;
    PERFORM set_config('app.role', coalesce(caller_role, ''), true);
    IF account_currency IS DISTINCT FROM NEW.currency THEN
        RAISE EXCEPTION 'entry currency % does not match account % currency %',
            NEW.currency, NEW.account_id, account_currency USING ERRCODE = 'check_violation';
    END IF;
    IF account_owner IS DISTINCT FROM NEW.user_id THEN
        RAISE EXCEPTION 'entry user % does not match account % owner %',
            NEW.user_id, NEW.account_id, account_owner USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER ledger_entries_match_account
    BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_matches_account();
"""

ENTRY_MATCHES_ACCOUNT_REVERSE = """
DROP TRIGGER IF EXISTS ledger_entries_match_account ON ledger_entries;
DROP FUNCTION IF EXISTS ledger_entry_matches_account();
"""

# Accounts are never deleted, and only their maintained balance may change.
ACCOUNT_IDENTITY_FIXED = """
CREATE FUNCTION ledger_account_identity_fixed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger accounts are never deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.code, NEW.shard, NEW.owner_id, NEW.kind, NEW.currency, NEW.created_at)
       IS DISTINCT FROM (OLD.code, OLD.shard, OLD.owner_id, OLD.kind, OLD.currency, OLD.created_at) THEN
        RAISE EXCEPTION 'only the balance of ledger account % may change', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER ledger_accounts_identity_fixed
    BEFORE UPDATE OR DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_account_identity_fixed();
"""

ACCOUNT_IDENTITY_FIXED_REVERSE = """
DROP TRIGGER IF EXISTS ledger_accounts_identity_fixed ON ledger_accounts;
DROP FUNCTION IF EXISTS ledger_account_identity_fixed();
"""

ME = CURRENT_USER_SQL


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial"), ("treasury", "0002_row_level_security")]

    operations = [
        migrations.RunSQL(BALANCED_CHECK, BALANCED_CHECK_REVERSE),
        migrations.RunSQL(ENTRY_MATCHES_ACCOUNT, ENTRY_MATCHES_ACCOUNT_REVERSE),
        migrations.RunSQL(ACCOUNT_IDENTITY_FIXED, ACCOUNT_IDENTITY_FIXED_REVERSE),
        append_only_operation("ledger_entries"),
        append_only_operation("ledger_transactions"),
        migrations.RunSQL(*owner_reads_system_writes_sql("ledger_accounts", f"owner_id = {ME}")),
        migrations.RunSQL(*owner_reads_system_writes_sql("ledger_entries", f"user_id = {ME}")),
        migrations.RunSQL(
            *owner_reads_system_writes_sql(
                "ledger_transactions",
                "EXISTS (SELECT 1 FROM ledger_entries e"
                f" WHERE e.transaction_id = ledger_transactions.id AND e.user_id = {ME})",
            )
        ),
    ]
