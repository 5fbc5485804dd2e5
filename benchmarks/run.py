"""Ledger benchmarks: `make bench` (or `.venv/bin/python benchmarks/run.py [--quick]`).

Runs against a scratch database `bench_treasury` on the same PostgreSQL as the app and
prints each measurement with its ratio to a baseline measured in the same run:

- posting: `post_transaction` (validation, idempotency, ordered locks, balances, the deferred
  balance trigger, RLS) vs the same rows written by raw psycopg with none of that;
- 8 threads posting across shared and hot accounts vs the single-thread rate;
- a balance read (one indexed row per shard) at 10k vs 1M entries, against recomputing the
  balance from the entries.

Numbers are for reading, not asserting: tests never assert timings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "treasury.settings")
os.environ["TREASURY_DATABASE_NAME"] = "bench_treasury"

import django

django.setup()

import psycopg  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.utils import timezone  # noqa: E402

from ledger.chart import platform_code, user_code  # noqa: E402
from ledger.selectors import account_balance, balance_at  # noqa: E402
from ledger.services import credit, debit, post_transaction  # noqa: E402
from tests.factories import HostFactory  # noqa: E402
from treasury.rls import system_context  # noqa: E402


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def report(
    name: str, value: float, unit: str, baseline: float | None = None, base: str = ""
) -> None:
    ratio = f"   {value / baseline:6.2f}x {base}" if baseline else ""
    print(f"  {name:<44} {value:>12,.1f} {unit}{ratio}", flush=True)


def progress(label: str, done: int, total: int) -> None:
    bar = "#" * (30 * done // total)
    print(f"\r  {label:<20} [{bar:<30}] {100 * done // total:3d}%", end="", file=sys.stderr)
    if done >= total:
        print(file=sys.stderr)


def charge_lines(host_code: str, stripe: str, fees: str) -> list:
    return [debit(stripe, 1000, "USD"), credit(host_code, 900, "USD"), credit(fees, 100, "USD")]


def bench_post_transaction(count: int, hosts: list[str], tag: str) -> float:
    stripe, fees = platform_code("stripe_balance", "USD"), platform_code("fee_revenue", "USD")
    started = time.perf_counter()
    for n in range(count):
        post_transaction(
            idempotency_key=f"bench:{tag}:{n}",
            event_source="bench",
            entries=charge_lines(hosts[n % len(hosts)], stripe, fees),
        )
        if n % 500 == 0:
            progress("post_transaction", n, count)
    progress("post_transaction", count, count)
    return rate(count, time.perf_counter() - started)


def bench_raw_psycopg(count: int, tag: str) -> float:
    """The same rows with plain INSERTs/UPDATEs as the owner: no checks, no locks, no RLS."""
    params = connections["owner"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM ledger_accounts WHERE code = %s", [platform_code("fee_revenue", "USD")]
        )
        (account_id,) = cur.fetchone()
        started = time.perf_counter()
        for n in range(count):
            cur.execute(
                "INSERT INTO ledger_transactions (idempotency_key, request_hash, event_source,"
                " effective_at, metadata, created_at) VALUES (%s, '', 'raw', now(), '{}', now())"
                " RETURNING id",
                [f"raw:{tag}:{n}"],
            )
            (txn,) = cur.fetchone()
            cur.executemany(
                "INSERT INTO ledger_entries (transaction_id, account_id, amount_cents, currency,"
                " type, event_source, created_at) VALUES (%s, %s, %s, 'USD', %s, 'raw', now())",
                [
                    (txn, account_id, 1000, "debit"),
                    (txn, account_id, 900, "credit"),
                    (txn, account_id, 100, "credit"),
                ],
            )
            cur.execute(
                "UPDATE ledger_accounts SET balance_cents = balance_cents WHERE id = %s",
                [account_id],
            )
            conn.commit()
        return rate(count, time.perf_counter() - started)


def bench_threads(threads: int, per_thread: int, hosts: list[str], tag: str) -> float:
    stripe, fees = platform_code("stripe_balance", "USD"), platform_code("fee_revenue", "USD")
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                post_transaction(
                    idempotency_key=f"bench:{tag}:{n}:{i}",
                    event_source="bench",
                    entries=charge_lines(hosts[(n + i) % len(hosts)], stripe, fees),
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return rate(threads * per_thread, time.perf_counter() - started)


def timed_ms(fn: Callable[[], object], repeat: int = 200) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def grow_ledger_to(entries: int, host_code: str) -> None:
    """Bulk-load balanced filler transactions as the owner (triggers off for speed; the
    filler is balanced by construction and its balances are set to match)."""
    params = connections["owner"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM ledger_entries")
        (have,) = cur.fetchone()
        missing_txns = max(0, (entries - have) // 2)
        if not missing_txns:
            return
        cur.execute("SET session_replication_role = replica")
        cur.execute(
            "SELECT id FROM ledger_accounts WHERE code = %s",
            [platform_code("stripe_balance", "USD")],
        )
        stripe_id = cur.fetchone()[0]
        cur.execute("SELECT id FROM ledger_accounts WHERE code = %s", [host_code])
        host_id = cur.fetchone()[0]
        batch = 100_000
        for start in range(0, missing_txns, batch):
            n = min(batch, missing_txns - start)
            cur.execute(
                "WITH t AS (INSERT INTO ledger_transactions (idempotency_key, request_hash,"
                " event_source, effective_at, metadata, created_at)"
                " SELECT 'fill:' || gen_random_uuid(), '', 'fill', now(), '{}', now()"
                " FROM generate_series(1, %s) RETURNING id)"
                " INSERT INTO ledger_entries (transaction_id, account_id, amount_cents, currency,"
                " type, event_source, created_at) SELECT id, a, 1, 'USD', s, 'fill', now() FROM t,"
                " (VALUES (%s::bigint, 'debit'), (%s::bigint, 'credit')) AS legs(a, s)",
                [n, stripe_id, host_id],
            )
            conn.commit()
            progress("grow ledger", start + n, missing_txns)
        cur.execute(
            "UPDATE ledger_accounts a SET balance_cents = s.b FROM (SELECT account_id,"
            " sum(CASE WHEN type = 'debit' THEN amount_cents ELSE -amount_cents END) *"
            " CASE WHEN min(ac.kind) IN ('asset', 'expense') THEN 1 ELSE -1 END AS b"
            " FROM ledger_entries e JOIN ledger_accounts ac ON ac.id = e.account_id"
            " GROUP BY account_id) s WHERE a.id = s.account_id"
        )
        conn.commit()
        cur.execute("ANALYZE ledger_entries")
        conn.commit()


def fresh_database() -> None:
    """Each run starts from an empty scratch database, so sizes mean what they say."""
    params = connections["owner"].get_connection_params()
    name = params.pop("dbname")
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts, 100k not 1M")
    args = parser.parse_args()
    count = 500 if args.quick else 3000
    big = 100_000 if args.quick else 1_000_000

    fresh_database()
    call_command("bootstrap_db", verbosity=0)
    call_command("migrate", database="owner", verbosity=0)
    tag = uuid.uuid4().hex[:8]
    with system_context():
        hosts = [user_code(HostFactory().pk, "payable", "USD") for _ in range(4)]
        post_transaction(  # open the accounts
            idempotency_key=f"bench:{tag}:open",
            event_source="bench",
            entries=charge_lines(
                hosts[0],
                platform_code("stripe_balance", "USD"),
                platform_code("fee_revenue", "USD"),
            ),
        )
    connection.close()

    print("Posting (3 entries per transaction)")
    raw = bench_raw_psycopg(count, tag)
    report("raw psycopg, same rows, no checks (baseline)", raw, "txn/s")
    single = bench_post_transaction(count, hosts, tag)
    report("post_transaction, 1 thread", single, "txn/s", raw, "of raw")
    eight = bench_threads(8, count // 4, hosts, f"{tag}:8")
    report(
        "post_transaction, 8 threads (hot + shared accounts)", eight, "txn/s", single, "of 1 thread"
    )

    print("Balance read")
    for size in (10_000, big):
        grow_ledger_to(size, hosts[0])
        with system_context():
            read = timed_ms(lambda: account_balance(code=hosts[0]))
            recompute = timed_ms(lambda: balance_at(code=hosts[0], at=timezone.now()), repeat=5)
        report(f"account_balance at {size:,} entries", read, "ms")
        report(f"  recomputed from entries at {size:,}", recompute, "ms", read, "of the row read")
    print("done")


if __name__ == "__main__":
    main()
