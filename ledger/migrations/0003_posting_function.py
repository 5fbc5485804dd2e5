"""Posting in one statement, and the books written by nothing else.

`ledger_post(header, legs)` does a whole posting inside PostgreSQL: the idempotency gate,
opening accounts the chart knows but the books lack, locking the touched (account, shard)
rows in id order, the balance guards, the entries, the balances and the outbox event.
`ledger_post_batch(postings, all_or_nothing)` does many, each with its own outcome.
Both are SECURITY DEFINER (owned by the owner, search_path fixed) and refuse callers whose
context is not admin or system; the runtime role keeps SELECT on the three ledger tables
but loses INSERT, UPDATE and DELETE (treasury/db_roles.py, after every migrate), so these
functions are the only way a runtime connection can change the books.

What the database still refuses, whoever writes (the owner included, short of disabling
triggers), with one balance check per transaction instead of one per entry:
- at COMMIT, each transaction has at least two entries and balances per currency
  (the deferred constraint trigger on ledger_transactions, once per transaction);
- a transaction's entries are written by one statement, after the transaction row, each
  matching its account's currency and owner (one statement-level trigger on
  ledger_entries): so no entry can join a committed transaction, nor a transaction whose
  check already ran (SET CONSTRAINTS ... IMMEDIATE), and the check at COMMIT sees the
  final entries;
- entries, transactions and accounts stay append-only (migration 0002).

Refusals carry their own SQLSTATE, mapped back in ledger/posting.py:
LD400 invalid input, LD403 not the admin/system context, LD409 idempotency conflict,
LD422 insufficient funds, LD499 not posted because another posting of an all-or-nothing
batch was refused. The DETAIL of a refusal is a JSON object of the fields it is about.
"""

from django.db import migrations

# The books' writers: the caller's verified context (treasury/rls.py) is admin or system.
# app_caller_role() reads it from inside these SECURITY DEFINER functions too.
CALLER_MAY_WRITE = """
CREATE FUNCTION ledger_caller_may_write() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(app_caller_role() IN ('admin', 'system'), false)
$$;

CREATE FUNCTION ledger_require_writer() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ledger_caller_may_write() THEN
        RAISE EXCEPTION 'only the admin or system context may write the books'
            USING ERRCODE = 'LD403';
    END IF;
END;
$$;
"""

CALLER_MAY_WRITE_REVERSE = """
DROP FUNCTION IF EXISTS ledger_require_writer();
DROP FUNCTION IF EXISTS ledger_caller_may_write();
"""

# One check per transaction at COMMIT (it was one per entry plus one per transaction, each
# re-reading the whole transaction). It reads as the system, whatever context the writer
# left behind, and puts the caller's role back afterwards.
BALANCED_ONCE = """
DROP TRIGGER IF EXISTS ledger_entries_balanced ON ledger_entries;
DROP FUNCTION IF EXISTS ledger_entries_balanced_trigger();

CREATE OR REPLACE FUNCTION ledger_assert_balanced(txn_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    caller_role text := current_setting('app.role', true);
    entry_count bigint := 0;
    per record;
    unbalanced record;
BEGIN
    PERFORM set_config('app.role', 'system', true);
    FOR per IN
        SELECT currency, count(*) AS entries,
               coalesce(sum(amount_cents) FILTER (WHERE type = 'debit'), 0) AS debits,
               coalesce(sum(amount_cents) FILTER (WHERE type = 'credit'), 0) AS credits
          FROM ledger_entries WHERE transaction_id = txn_id
         GROUP BY currency ORDER BY currency
    LOOP
        entry_count := entry_count + per.entries;
        IF per.debits <> per.credits AND unbalanced IS NULL THEN
            unbalanced := per;
        END IF;
    END LOOP;
    PERFORM set_config('app.role', coalesce(caller_role, ''), true);
    IF entry_count < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has % entries; at least 2 are required',
            txn_id, entry_count USING ERRCODE = 'check_violation';
    END IF;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced in %: debits % <> credits %',
            txn_id, unbalanced.currency, unbalanced.debits, unbalanced.credits
            USING ERRCODE = 'check_violation';
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION ledger_transactions_balanced_trigger() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM ledger_assert_balanced(NEW.id);
    RETURN NULL;
END;
$$;
"""

BALANCED_ONCE_REVERSE = """
CREATE OR REPLACE FUNCTION ledger_entries_balanced_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_assert_balanced(NEW.transaction_id);
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_balanced_trigger();
"""

# Replaces the BEFORE trigger per entry (a query per row) with one query per statement.
WRITTEN_WITH_THEIR_TRANSACTION = """
DROP TRIGGER IF EXISTS ledger_entries_match_account ON ledger_entries;
DROP FUNCTION IF EXISTS ledger_entry_matches_account();

CREATE FUNCTION ledger_entries_written_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    caller_role text := current_setting('app.role', true);
    refusal_message text;
BEGIN
    PERFORM set_config('app.role', 'system', true);
    SELECT checks.message INTO refusal_message FROM (
        SELECT CASE WHEN a.currency IS DISTINCT FROM e.currency THEN 1 ELSE 2 END AS rank,
               CASE WHEN a.currency IS DISTINCT FROM e.currency
                    THEN format('entry currency %s does not match account %s currency %s',
                                e.currency, e.account_id, a.currency)
                    ELSE format('entry user %s does not match account %s owner %s',
                                e.user_id, e.account_id, a.owner_id) END AS message
          FROM written e LEFT JOIN ledger_accounts a ON a.id = e.account_id
         WHERE a.currency IS DISTINCT FROM e.currency OR a.owner_id IS DISTINCT FROM e.user_id
        UNION ALL
        SELECT 3,
               CASE WHEN t.id IS NULL
                    THEN format('ledger transaction %s does not exist (yet): entries are'
                                ' written after their transaction', w.transaction_id)
                    ELSE format('ledger transaction %s already has entries: a'
                                ' transaction''s entries are written together, in one'
                                ' statement', w.transaction_id) END
          FROM (SELECT transaction_id, count(*) AS entries FROM written GROUP BY 1) w
          LEFT JOIN ledger_transactions t ON t.id = w.transaction_id
         WHERE t.id IS NULL
            OR (SELECT count(*) FROM ledger_entries o WHERE o.transaction_id = w.transaction_id)
               <> w.entries
        ORDER BY 1 LIMIT 1
    ) checks;
    PERFORM set_config('app.role', coalesce(caller_role, ''), true);
    IF refusal_message IS NOT NULL THEN
        RAISE EXCEPTION '%', refusal_message USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_entries_written_with_their_transaction
    AFTER INSERT ON ledger_entries REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_written_check();
"""

WRITTEN_WITH_THEIR_TRANSACTION_REVERSE = """
DROP TRIGGER IF EXISTS ledger_entries_written_with_their_transaction ON ledger_entries;
DROP FUNCTION IF EXISTS ledger_entries_written_check();
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

# The parts of a posting. They are SECURITY INVOKER: inside ledger_post they act as the
# owner; called directly by the runtime role they have its rights, which write nothing.
POSTING = r"""
CREATE TYPE ledger_posting_outcome AS (
    status text,             -- posted | replayed | refused
    transaction_id bigint,
    effective_at timestamptz,
    created_at timestamptz,
    created_by_id uuid,
    error_code text,         -- the SQLSTATE of a refusal (LD400, LD409, LD422, LD499)
    error_message text,
    error_fields jsonb
);

CREATE TYPE ledger_posting_leg AS (
    ordinal bigint,
    code text,
    shard integer,
    side text,
    amount_cents bigint,
    currency text,
    floor_cents bigint,      -- must_not_go_below
    account_id bigint,
    account_kind text,
    account_currency text,
    owner_id uuid,
    balance_cents bigint
);

-- What a batch writes once, at its end: the entries of its postings (with what their
-- outbox events say), and the header of each posted transaction's event.
CREATE TYPE ledger_posting_entry AS (
    transaction_id bigint,
    ordinal bigint,
    code text,
    account_id bigint,
    user_id uuid,
    amount_cents bigint,
    currency text,
    side text,
    event_source text,
    reference_id text
);

CREATE TYPE ledger_posted AS (
    transaction_id bigint,
    idempotency_key text,
    event_source text,
    reference_id text,
    effective_at timestamptz,
    metadata jsonb
);

CREATE FUNCTION ledger_refusal(code text, message text, fields jsonb)
RETURNS ledger_posting_outcome
LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW('refused', NULL, NULL, NULL, NULL, code, message, fields)::ledger_posting_outcome
$$;

-- The outcome of a key already used (replayed, or refused if the body differs); NULL
-- fields when the key is new.
CREATE FUNCTION ledger_replay(posting_key text, body_hash text) RETURNS ledger_posting_outcome
LANGUAGE plpgsql AS $$
DECLARE
    txn record;
BEGIN
    SELECT id, request_hash, effective_at, created_at, created_by_id INTO txn
      FROM ledger_transactions WHERE idempotency_key = posting_key;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF txn.request_hash IS DISTINCT FROM body_hash THEN
        RETURN ledger_refusal('LD409',
            format('idempotency key %L was already used for a different posting', posting_key),
            '{"idempotency_key": ["reused with a different body"]}');
    END IF;
    RETURN ROW('replayed', txn.id, txn.effective_at, txn.created_at, txn.created_by_id,
               NULL, NULL, NULL)::ledger_posting_outcome;
END;
$$;

-- Open the accounts `legs` name that the books lack (owners that exist only), in (code,
-- shard) order and holding no account lock; then lock every one of them in id order. So
-- concurrent postings queue on the accounts they share but never wait in a cycle: a
-- posting that finds an account missing waits for its opener's INSERT holding nothing.
CREATE FUNCTION ledger_lock_accounts(legs jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    wanted integer;
    present integer;
    ids bigint[];
BEGIN
    -- One index probe per account: LATERAL ... LIMIT 1 keeps the planner, which cannot
    -- know `legs` is a handful of rows, from scanning every account.
    SELECT count(*), count(a.id), array_agg(a.id) INTO wanted, present, ids
      FROM (SELECT DISTINCT l->>'code' AS code, (l->>'shard')::integer AS shard
              FROM jsonb_array_elements(legs) AS l) w
      LEFT JOIN LATERAL (SELECT x.id FROM ledger_accounts x
                          WHERE x.code = w.code AND x.shard = w.shard LIMIT 1) a ON true;
    IF present < wanted THEN
        INSERT INTO ledger_accounts (code, shard, owner_id, kind, currency, balance_cents,
                                     created_at)
        SELECT w.code, w.shard, w.owner_id, w.kind, upper(substring(w.code FROM '[a-z]{3}$')),
               0, now()
          FROM (SELECT DISTINCT ON (l->>'code', (l->>'shard')::integer)
                       l->>'code' AS code, (l->>'shard')::integer AS shard, l->>'kind' AS kind,
                       CASE WHEN l->>'code' ~ '^user:[0-9a-f-]{36}:'
                            THEN split_part(l->>'code', ':', 2)::uuid END AS owner_id
                  FROM jsonb_array_elements(legs) AS l
                 WHERE l->>'code' ~ '^(platform|user:[0-9a-f-]{36}):[a-z_]+:[a-z]{3}$'
                   AND l->>'kind' IN ('asset', 'liability', 'revenue', 'expense')) w
         WHERE NOT EXISTS (SELECT 1 FROM ledger_accounts a
                            WHERE a.code = w.code AND a.shard = w.shard)
           AND (w.owner_id IS NULL OR EXISTS (SELECT 1 FROM users u WHERE u.id = w.owner_id))
         ORDER BY w.code, w.shard
        ON CONFLICT (code, shard) DO NOTHING;
        SELECT array_agg(a.id) INTO ids
          FROM (SELECT DISTINCT l->>'code' AS code, (l->>'shard')::integer AS shard
                  FROM jsonb_array_elements(legs) AS l) w
          JOIN LATERAL (SELECT x.id FROM ledger_accounts x
                         WHERE x.code = w.code AND x.shard = w.shard LIMIT 1) a ON true;
    END IF;
    PERFORM 1 FROM ledger_accounts WHERE id = ANY(ids) ORDER BY id FOR UPDATE;
END;
$$;

-- Why a posting is refused (NULL status: it is not), from its legs as found under the
-- locks: what Python validated first (with the same messages), checked again because
-- this is the books' only writer whoever calls it, and the balance guards. `moved_*`:
-- what earlier postings of the same batch moved, not written yet. Reads nothing.
CREATE FUNCTION ledger_posting_refusal(header jsonb, found_legs ledger_posting_leg[],
                                       moved_ids bigint[], moved_cents bigint[])
RETURNS ledger_posting_outcome
LANGUAGE plpgsql AS $$
DECLARE
    posting_key text := header->>'idempotency_key';
    leg ledger_posting_leg;
    other ledger_posting_leg;
    currencies text[] := '{}';
    nets bigint[] := '{}';
    unknown_owners text[] := '{}';
    guarded boolean := false;
    balance_after bigint;
    i integer;
BEGIN
    IF posting_key IS NULL OR posting_key = '' OR length(posting_key) > 255 THEN
        RETURN ledger_refusal('LD400', 'idempotency_key is required (at most 255 characters)',
                              '{"idempotency_key": ["required"]}');
    END IF;
    IF coalesce(header->>'event_source', '') = '' THEN
        RETURN ledger_refusal('LD400', 'event_source is required',
                              '{"event_source": ["required"]}');
    END IF;
    IF coalesce(cardinality(found_legs), 0) < 2 THEN
        RETURN ledger_refusal('LD400', 'a transaction needs at least two entries',
                              '{"entries": ["min 2"]}');
    END IF;
    FOREACH leg IN ARRAY found_legs LOOP
        IF leg.amount_cents IS NULL THEN
            RETURN ledger_refusal('LD400',
                format('entries.%s: amount_cents must be a positive integer (minor units)',
                       leg.ordinal),
                jsonb_build_object(format('entries.%s.amount_cents', leg.ordinal),
                                   jsonb_build_array('must be a positive integer')));
        END IF;
        IF leg.side IS DISTINCT FROM 'debit' AND leg.side IS DISTINCT FROM 'credit' THEN
            RETURN ledger_refusal('LD400',
                format('entries.%s: side must be debit or credit', leg.ordinal),
                jsonb_build_object(format('entries.%s.type', leg.ordinal),
                                   jsonb_build_array('debit or credit')));
        END IF;
        IF leg.account_id IS NULL THEN
            IF leg.code ~ '^user:[0-9a-f-]{36}:' THEN  -- opened, unless its owner is unknown
                unknown_owners := unknown_owners || split_part(leg.code, ':', 2);
                CONTINUE;
            END IF;
            RETURN ledger_refusal('LD400',
                format('entries.%s: unknown account %L', leg.ordinal, leg.code),
                jsonb_build_object(format('entries.%s.account', leg.ordinal),
                                   jsonb_build_array('unknown account')));
        END IF;
        IF leg.account_currency IS DISTINCT FROM leg.currency THEN
            RETURN ledger_refusal('LD400',
                format('entries.%s: account %s holds %s, not %s', leg.ordinal, leg.code,
                       leg.account_currency, leg.currency),
                jsonb_build_object(format('entries.%s.currency', leg.ordinal),
                                   jsonb_build_array('account currency is '
                                                     || leg.account_currency)));
        END IF;
        i := array_position(currencies, leg.currency);
        IF i IS NULL THEN
            currencies := currencies || leg.currency;
            nets := nets || 0::bigint;
            i := cardinality(currencies);
        END IF;
        nets[i] := nets[i] + CASE WHEN leg.side = 'debit' THEN leg.amount_cents
                                  ELSE -leg.amount_cents END;
        guarded := guarded OR leg.floor_cents IS NOT NULL;
    END LOOP;
    IF cardinality(unknown_owners) > 0 THEN
        RETURN ledger_refusal('LD400',
            'unknown account owner(s): ' || (SELECT string_agg(DISTINCT o, ', ' ORDER BY o)
                                               FROM unnest(unknown_owners) AS o),
            '{"entries": ["unknown account owner"]}');
    END IF;
    FOR i IN 1 .. cardinality(currencies) LOOP
        IF nets[i] <> 0 THEN
            RETURN ledger_refusal('LD400',
                format('unbalanced in %s: %s exceed %s by %s minor units', currencies[i],
                       CASE WHEN nets[i] > 0 THEN 'debits' ELSE 'credits' END,
                       CASE WHEN nets[i] > 0 THEN 'credits' ELSE 'debits' END, abs(nets[i])),
                jsonb_build_object('entries', jsonb_build_array(
                    'debits and credits differ in ' || currencies[i])));
        END IF;
    END LOOP;
    IF NOT guarded THEN
        RETURN NULL;
    END IF;
    -- Each guarded account after the whole posting, under its lock.
    FOREACH leg IN ARRAY found_legs LOOP
        CONTINUE WHEN leg.floor_cents IS NULL;
        balance_after := leg.balance_cents
            + coalesce(moved_cents[array_position(moved_ids, leg.account_id)], 0);
        FOREACH other IN ARRAY found_legs LOOP
            IF other.account_id = leg.account_id THEN
                balance_after := balance_after + ledger_natural_delta(other);
            END IF;
        END LOOP;
        IF balance_after < leg.floor_cents THEN
            RETURN ledger_refusal('LD422',
                format('%s would go to %s %s minor units, below %s', leg.code, balance_after,
                       leg.account_currency, leg.floor_cents),
                '{"amount_cents": ["exceeds the available balance"]}');
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

-- How a leg moves its account's balance (the natural side: assets and expenses grow
-- with debits, liabilities and revenue with credits).
CREATE FUNCTION ledger_natural_delta(leg ledger_posting_leg) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN (leg.side = 'debit') = (leg.account_kind IN ('asset', 'expense'))
                THEN leg.amount_cents ELSE -leg.amount_cents END
$$;

-- Postings in order, their accounts already opened and locked (ledger_lock_accounts);
-- one outcome each, a refusal writing nothing. Each posting reads its key and its
-- accounts and writes its transaction row (the idempotency gate); the entries, the
-- balances and the outbox events of them all are written at the end, three statements
-- whatever the number of postings, each account's balance updated once.
CREATE FUNCTION ledger_post_many(postings jsonb) RETURNS ledger_posting_outcome[]
LANGUAGE plpgsql AS $$
DECLARE
    outcomes ledger_posting_outcome[] := '{}';
    outcome ledger_posting_outcome;
    posting jsonb;
    header jsonb;
    found_legs ledger_posting_leg[];
    leg ledger_posting_leg;
    txn record;
    k integer;
    moved_ids bigint[] := '{}';
    moved_cents bigint[] := '{}';
    written ledger_posting_entry[] := '{}';
    posted ledger_posted[] := '{}';
BEGIN
    FOR posting IN SELECT value FROM jsonb_array_elements(postings) LOOP
        header := posting->'header';
        outcome := ledger_replay(header->>'idempotency_key', header->>'request_hash');
        IF outcome.status IS NOT NULL THEN
            outcomes := outcomes || outcome;
            CONTINUE;
        END IF;
        -- One index probe per account (LATERAL ... LIMIT 1: see ledger_lock_accounts).
        SELECT array_agg(ROW(
                   l.ordinal - 1, l.item->>'code', (l.item->>'shard')::integer,
                   l.item->>'side',
                   CASE WHEN l.item->>'amount_cents' ~ '^[1-9][0-9]{0,17}$'
                        THEN (l.item->>'amount_cents')::bigint END,
                   l.item->>'currency',
                   CASE WHEN l.item->>'floor_cents' ~ '^-?[0-9]{1,18}$'
                        THEN (l.item->>'floor_cents')::bigint END,
                   a.id, a.kind, a.currency, a.owner_id, a.balance_cents
               )::ledger_posting_leg ORDER BY l.ordinal)
          INTO found_legs
          FROM jsonb_array_elements(posting->'legs') WITH ORDINALITY AS l(item, ordinal)
          LEFT JOIN LATERAL (SELECT x.id, x.kind, x.currency, x.owner_id, x.balance_cents
                               FROM ledger_accounts x
                              WHERE x.code = l.item->>'code'
                                AND x.shard = (l.item->>'shard')::integer
                              LIMIT 1) a ON true;
        outcome := ledger_posting_refusal(header, found_legs, moved_ids, moved_cents);
        IF outcome.status IS NOT NULL THEN
            outcomes := outcomes || outcome;
            CONTINUE;
        END IF;
        -- The gate. A twin that committed while we waited for the locks: a replay.
        INSERT INTO ledger_transactions (idempotency_key, request_hash, event_source,
                                         reference_id, effective_at, metadata, reverses_id,
                                         created_by_id, created_at)
        VALUES (header->>'idempotency_key', header->>'request_hash', header->>'event_source',
                header->>'reference_id',
                coalesce((header->>'effective_at')::timestamptz, now()),
                coalesce(header->'metadata', '{}'::jsonb), (header->>'reverses_id')::bigint,
                (header->>'created_by_id')::uuid, now())
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id, effective_at, created_at, created_by_id INTO txn;
        IF NOT FOUND THEN
            outcome := ledger_replay(header->>'idempotency_key', header->>'request_hash');
            IF outcome.status IS NULL THEN
                RAISE EXCEPTION 'idempotency key % is taken by a posting not visible yet',
                    header->>'idempotency_key' USING ERRCODE = 'serialization_failure';
            END IF;
            outcomes := outcomes || outcome;
            CONTINUE;
        END IF;
        FOREACH leg IN ARRAY found_legs LOOP
            written := written || ROW(txn.id, leg.ordinal, leg.code, leg.account_id,
                                      leg.owner_id, leg.amount_cents, leg.currency, leg.side,
                                      header->>'event_source',
                                      header->>'reference_id')::ledger_posting_entry;
            k := array_position(moved_ids, leg.account_id);
            IF k IS NULL THEN
                moved_ids := moved_ids || leg.account_id;
                moved_cents := moved_cents || 0::bigint;
                k := cardinality(moved_ids);
            END IF;
            moved_cents[k] := moved_cents[k] + ledger_natural_delta(leg);
        END LOOP;
        posted := posted || ROW(txn.id, header->>'idempotency_key', header->>'event_source',
                                header->>'reference_id', txn.effective_at,
                                coalesce(header->'metadata', '{}'::jsonb))::ledger_posted;
        outcomes := outcomes || ROW('posted', txn.id, txn.effective_at, txn.created_at,
                                    txn.created_by_id, NULL, NULL, NULL)::ledger_posting_outcome;
    END LOOP;
    IF cardinality(posted) = 0 THEN
        RETURN outcomes;
    END IF;

    INSERT INTO ledger_entries (transaction_id, account_id, user_id, amount_cents, currency,
                                type, event_source, reference_id, created_at)
    SELECT e.transaction_id, e.account_id, e.user_id, e.amount_cents, e.currency, e.side,
           e.event_source, e.reference_id, now()
      FROM unnest(written) WITH ORDINALITY AS e
     ORDER BY e.ordinality;

    UPDATE ledger_accounts a SET balance_cents = a.balance_cents + m.cents
      FROM unnest(moved_ids, moved_cents) AS m(id, cents)
     WHERE a.id = m.id AND m.cents <> 0;

    -- The outbox events (events.services.LEDGER_TRANSACTION_POSTED), in the same commit.
    INSERT INTO events (type, subject, payload, created_at)
    SELECT 'ledger.transaction_posted', 'ledger_transaction:' || t.transaction_id,
           jsonb_build_object(
               'transaction_id', t.transaction_id,
               'idempotency_key', t.idempotency_key,
               'event_source', t.event_source,
               'reference_id', t.reference_id,
               'effective_at', t.effective_at,
               'metadata', t.metadata,
               'entries', legs.entries,
               'amounts', amounts.amounts),
           clock_timestamp()
      FROM unnest(posted) WITH ORDINALITY AS t
      JOIN (SELECT e.transaction_id,
                   jsonb_agg(jsonb_build_object('account', e.code, 'owner_id', e.user_id,
                                                'side', e.side,
                                                'amount_cents', e.amount_cents,
                                                'currency', e.currency)
                             ORDER BY e.ordinal) AS entries
              FROM unnest(written) AS e GROUP BY e.transaction_id) legs
        ON legs.transaction_id = t.transaction_id
      JOIN (SELECT per.transaction_id,
                   jsonb_agg(jsonb_build_object('owner_id', per.user_id,
                                                'currency', per.currency,
                                                'debit_cents', per.debits,
                                                'credit_cents', per.credits)
                             ORDER BY per.first) AS amounts
              FROM (SELECT e.transaction_id, e.user_id, e.currency, min(e.ordinal) AS first,
                           coalesce(sum(e.amount_cents) FILTER (WHERE e.side = 'debit'), 0)
                               AS debits,
                           coalesce(sum(e.amount_cents) FILTER (WHERE e.side = 'credit'), 0)
                               AS credits
                      FROM unnest(written) AS e
                     GROUP BY e.transaction_id, e.user_id, e.currency) per
             GROUP BY per.transaction_id) amounts
        ON amounts.transaction_id = t.transaction_id
     ORDER BY t.ordinality;

    RETURN outcomes;
END;
$$;

-- The public doors. Only these write the books for the runtime role.
CREATE FUNCTION ledger_post(header jsonb, legs jsonb) RETURNS ledger_posting_outcome
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    outcome ledger_posting_outcome;
BEGIN
    PERFORM ledger_require_writer();
    -- A replay takes no account lock (keys are never deleted: once seen, always seen).
    outcome := ledger_replay(header->>'idempotency_key', header->>'request_hash');
    IF outcome.status IS NULL THEN
        PERFORM ledger_lock_accounts(legs);
        outcome := (ledger_post_many(jsonb_build_array(jsonb_build_object(
            'header', header, 'legs', legs))))[1];
    END IF;
    IF outcome.status = 'refused' THEN
        RAISE EXCEPTION USING ERRCODE = outcome.error_code, MESSAGE = outcome.error_message,
            DETAIL = outcome.error_fields::text;
    END IF;
    RETURN outcome;
END;
$$;

-- Many independent postings in one statement, each with its outcome, in order. The
-- accounts of every new posting are opened and locked first, all together in id order
-- (one posting's locks are held until COMMIT anyway, and locking batch by batch in
-- one order is what keeps two concurrent batches from waiting on each other in a cycle).
-- all_or_nothing: if any posting is refused, none is written, and each of the others is
-- refused with LD499.
CREATE FUNCTION ledger_post_batch(postings jsonb, all_or_nothing boolean DEFAULT false)
RETURNS SETOF ledger_posting_outcome
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    outcomes ledger_posting_outcome[];
    refused integer;
BEGIN
    PERFORM ledger_require_writer();
    PERFORM ledger_lock_accounts(coalesce(
        (SELECT jsonb_agg(l)
           FROM jsonb_array_elements(postings) AS p, jsonb_array_elements(p->'legs') AS l
          WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t
                             WHERE t.idempotency_key = p->'header'->>'idempotency_key')),
        '[]'::jsonb));
    IF NOT all_or_nothing THEN
        RETURN QUERY SELECT * FROM unnest(ledger_post_many(postings));
        RETURN;
    END IF;
    BEGIN
        outcomes := ledger_post_many(postings);
        SELECT min(o.ordinal) INTO refused
          FROM unnest(outcomes) WITH ORDINALITY AS o(status, a, b, c, d, e, f, g, ordinal)
         WHERE o.status = 'refused';
        IF refused IS NOT NULL THEN
            RAISE EXCEPTION 'rolled back' USING ERRCODE = 'LD499';
        END IF;
    EXCEPTION WHEN SQLSTATE 'LD499' THEN
        -- Everything this block wrote is undone; the outcomes (variables) remain.
        SELECT array_agg(CASE WHEN o.status = 'refused'
                              THEN ROW(o.status, o.transaction_id, o.effective_at,
                                       o.created_at, o.created_by_id, o.error_code,
                                       o.error_message, o.error_fields)::ledger_posting_outcome
                              ELSE ledger_refusal('LD499',
                                  format('not posted: posting %s was refused and the batch'
                                         ' is all or nothing', refused - 1),
                                  '{}'::jsonb) END
                         ORDER BY o.ordinal)
          INTO outcomes
          FROM unnest(outcomes) WITH ORDINALITY AS o(status, transaction_id, effective_at,
                                                     created_at, created_by_id, error_code,
                                                     error_message, error_fields, ordinal);
    END;
    RETURN QUERY SELECT * FROM unnest(outcomes);
END;
$$;

-- Open accounts the chart knows (ensure_account): idempotent; returns nothing.
CREATE FUNCTION ledger_open_accounts(accounts jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM ledger_require_writer();
    PERFORM ledger_lock_accounts(accounts);
END;
$$;
"""

POSTING_REVERSE = """
DROP FUNCTION IF EXISTS ledger_open_accounts(jsonb);
DROP FUNCTION IF EXISTS ledger_post_batch(jsonb, boolean);
DROP FUNCTION IF EXISTS ledger_post(jsonb, jsonb);
DROP FUNCTION IF EXISTS ledger_post_many(jsonb);
DROP FUNCTION IF EXISTS ledger_natural_delta(ledger_posting_leg);
DROP FUNCTION IF EXISTS ledger_posting_refusal(jsonb, ledger_posting_leg[], bigint[], bigint[]);
DROP FUNCTION IF EXISTS ledger_lock_accounts(jsonb);
DROP FUNCTION IF EXISTS ledger_replay(text, text);
DROP FUNCTION IF EXISTS ledger_refusal(text, text, jsonb);
DROP TYPE IF EXISTS ledger_posted;
DROP TYPE IF EXISTS ledger_posting_entry;
DROP TYPE IF EXISTS ledger_posting_leg;
DROP TYPE IF EXISTS ledger_posting_outcome;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0002_database_guarantees"),
        ("events", "0002_database_guarantees"),
        ("treasury", "0002_row_level_security"),
        # app_caller_role(), which the writers' check reads.
        ("treasury", "0006_verified_context"),
    ]

    operations = [
        migrations.RunSQL(CALLER_MAY_WRITE, CALLER_MAY_WRITE_REVERSE),
        migrations.RunSQL(BALANCED_ONCE, BALANCED_ONCE_REVERSE),
        migrations.RunSQL(WRITTEN_WITH_THEIR_TRANSACTION, WRITTEN_WITH_THEIR_TRANSACTION_REVERSE),
        migrations.RunSQL(POSTING, POSTING_REVERSE),
    ]
