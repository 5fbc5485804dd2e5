"""Ledger drills: a way to break the books on purpose, off unless the owner turns it on.

The anomaly evaluation plants a balance that disagrees with its entries, to prove the
detectors find one. The runtime role can no longer write the books at all (ledger 0003), so
the drill goes through `ledger_drill_shift_balance`, a SECURITY DEFINER function that works
only while `treasury_private.ledger_drills` holds its row (a table only the owner can write:
the test database's setup and `evaluate_anomalies`, through the owner alias, for the length
of the run) and only under the verified system context. On a production database the row
is never there, and the function refuses.
"""

from django.db import migrations

FORWARD = """
CREATE TABLE IF NOT EXISTS treasury_private.ledger_drills (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton)
);
REVOKE ALL ON treasury_private.ledger_drills FROM PUBLIC;

CREATE OR REPLACE FUNCTION ledger_drill_shift_balance(p_code text, p_shard integer, p_cents bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM treasury_private.ledger_drills) THEN
        RAISE EXCEPTION 'ledger drills are off on this database'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF app_caller_role() IS DISTINCT FROM 'system' THEN
        RAISE EXCEPTION 'ledger drills run only in the system context'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE ledger_accounts SET balance_cents = balance_cents + p_cents
     WHERE code = p_code AND shard = p_shard;
END;
$$;
REVOKE ALL ON FUNCTION ledger_drill_shift_balance(text, integer, bigint) FROM PUBLIC;
"""

REVERSE = """
DROP FUNCTION IF EXISTS ledger_drill_shift_balance(text, integer, bigint);
DROP TABLE IF EXISTS treasury_private.ledger_drills;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("anomalies", "0003_schedules"),
        ("ledger", "0004_fewer_indexes"),
        ("treasury", "0006_verified_context"),
    ]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
