"""PostgreSQL goes away under load and comes back: clients get errors or succeed, and
nothing is half-written.

The test starts a PostgreSQL of its own (never the shared one), with the test database's
schema. Four clients in a subprocess post charge-shaped transactions; the server is stopped
with `-m immediate` (a crash: backends killed mid-statement and mid-COMMIT, WAL replayed on
start) and started again, then stopped cleanly and started once more. Each client posts a
failed key again until it succeeds. Afterwards every key is in the books exactly once, whole,
and every maintained balance equals the sum of its entries.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from .conftest import SCRATCH_DATABASE, ScratchPostgres, app_env

CLIENT = Path(__file__).with_name("load_client.py")


class Load:
    def __init__(self, scratch: ScratchPostgres, stop_file: Path) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, str(CLIENT), str(stop_file)],
            cwd=settings.BASE_DIR,
            env=app_env(scratch),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.posted = 0

    def wait_for_more(self, count: int, timeout: float = 90) -> None:
        """Until the clients report `count` more postings than so far."""
        wanted = self.posted + count
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while self.posted < wanted:
            assert time.monotonic() < deadline, f"stuck at {self.posted} postings"
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if not ready:
                continue
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"the clients died: {self.process.stderr.read()[-3000:]}")  # type: ignore[union-attr]
            if line.startswith("posted "):
                self.posted = int(line.split()[1])

    def finish(self) -> dict:
        out, err = self.process.communicate(timeout=180)
        assert self.process.returncode == 0, err[-3000:]
        return json.loads(out.strip().splitlines()[-1])


def test_clients_survive_a_postgres_crash_and_restart_with_the_books_whole(
    scratch_postgres: ScratchPostgres, tmp_path: Path
):
    stop_file = tmp_path / "stop"
    load = Load(scratch_postgres, stop_file)
    try:
        load.wait_for_more(30)
        scratch_postgres.stop("immediate")  # a crash in the middle of postings and commits
        time.sleep(0.5)
        scratch_postgres.start()
        load.wait_for_more(30)
        scratch_postgres.stop("fast")  # an orderly restart: sessions terminated
        time.sleep(0.5)
        scratch_postgres.start()
        load.wait_for_more(30)
    finally:
        stop_file.touch()
    result = load.finish()

    assert result["failed"] == []
    # The clients saw the outage, and only as database errors.
    assert sum(result["errors"].values()) > 0
    assert set(result["errors"]) <= {"OperationalError", "InterfaceError"}, result["errors"]

    posted: dict[str, int] = result["posted"]
    prefix = next(iter(posted)).rsplit(":", 2)[0]
    sql = scratch_postgres.psql

    # Every key exactly once, each with its six entries, balanced.
    rows = sql(
        "SELECT t.idempotency_key, count(e.id),"
        " sum(CASE WHEN e.type = 'debit' THEN e.amount_cents ELSE -e.amount_cents END)"
        " FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id"
        f" WHERE t.idempotency_key LIKE '{prefix}:%' GROUP BY t.idempotency_key",
        database=SCRATCH_DATABASE,
    ).split()
    found = {key: (int(n), int(net)) for key, n, net in (row.split("|") for row in rows)}
    assert set(found) == set(posted)
    assert set(found.values()) == {(6, 0)}

    # The maintained balances are what the entries say, and what the clients posted.
    host_balance, artist_balance = (
        int(
            sql(
                f"SELECT sum(balance_cents) FROM ledger_accounts WHERE code = '{code}'",
                database=SCRATCH_DATABASE,
            )
        )
        for code in (result["host"], result["artist"])
    )
    assert artist_balance == sum(gross // 10 for gross in posted.values())
    assert host_balance == sum(gross - 2 * (gross // 10) for gross in posted.values())
    mismatched = sql(
        "SELECT a.id FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id"
        " GROUP BY a.id, a.kind, a.balance_cents HAVING a.balance_cents <>"
        " coalesce(sum(CASE WHEN e.type = 'debit' THEN e.amount_cents ELSE -e.amount_cents END)"
        " * CASE WHEN a.kind IN ('asset', 'expense') THEN 1 ELSE -1 END, 0)",
        database=SCRATCH_DATABASE,
    )
    assert mismatched == ""
