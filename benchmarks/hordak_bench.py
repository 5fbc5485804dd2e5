"""django-hordak, posting the same charges and reading the same balance, in its own database.

Run by benchmarks/run.py in a subprocess (its settings are benchmarks/hordak_settings.py):
  setup                       a fresh bench_hordak, migrated, with the chart of accounts
  post CLIENTS PER_CLIENT TAG postings per second, one JSON line
  read ENTRIES RUNS           grow the legs to ENTRIES, then RUNS medians of balance reads (ms)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.hordak_settings"

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from djmoney.money import Money  # noqa: E402
from hordak.models import Account, AccountType, Leg, Transaction  # noqa: E402

from benchmarks.clients import run_clients  # noqa: E402

HOSTS = 64


def usd(cents: int) -> Money:
    return Money(Decimal(cents) / 100, "USD")


def setup() -> None:
    params = connection.get_connection_params()
    name = params.pop("dbname")
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)
    kinds = {
        "stripe_balance": AccountType.asset,
        "fee_revenue": AccountType.income,
        "processing_fees": AccountType.expense,
    }
    for name, kind in kinds.items():
        Account.objects.create(name=name, code=name[:6], type=kind, currencies=["USD"])
    for n in range(2 * HOSTS):  # hosts, then their artists
        Account.objects.create(
            name=f"payable {n}", code=f"p{n}", type=AccountType.liability, currencies=["USD"]
        )


def accounts() -> dict[str, Account]:
    return {a.name: a for a in Account.objects.all()}


def post_charge(
    chart: dict[str, Account], host: Account, artist: Account, gross: int, label: str
) -> None:
    """The charge benchmarks/run.py posts: stripe in, split host/artist/platform, Stripe's fee."""
    fee, artist_share, stripe_fee = gross // 10, gross // 10, 30 + gross * 29 // 1000
    with transaction.atomic():
        txn = Transaction.objects.create(description=label)
        Leg.objects.bulk_create(
            [
                Leg(transaction=txn, account=chart["stripe_balance"], debit=usd(gross)),
                Leg(transaction=txn, account=host, credit=usd(gross - fee - artist_share)),
                Leg(transaction=txn, account=artist, credit=usd(artist_share)),
                Leg(transaction=txn, account=chart["fee_revenue"], credit=usd(fee)),
                Leg(transaction=txn, account=chart["processing_fees"], debit=usd(stripe_fee)),
                Leg(transaction=txn, account=chart["stripe_balance"], credit=usd(stripe_fee)),
            ]
        )


def post(clients: int, per_client: int, tag: str) -> float:
    def prepare(client: int) -> dict[str, Account]:
        return accounts()

    def work(client: int, count: int, chart: dict[str, Account]) -> None:
        for n in range(count):
            index = (client * 7919 + n) % HOSTS
            host, artist = chart[f"payable {index}"], chart[f"payable {HOSTS + index}"]
            post_charge(chart, host, artist, 1000 + n, f"{tag}:{client}:{n}")

    return run_clients(work, clients=clients, per_client=per_client, setup=prepare)


def read(entries: int, runs: int) -> list[float]:
    """Grow the legs to `entries` (balanced filler on one host's account, bulk SQL), then
    time the host's balance read: hordak sums the account's legs."""
    chart = accounts()
    host, stripe = chart["payable 0"], chart["stripe_balance"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM hordak_leg")
        (have,) = cursor.fetchone()
        missing = max(0, (entries - have) // 2)
        # Balanced by construction: hordak's per-leg triggers are skipped for the bulk load,
        # as the treasury's are for its own filler.
        cursor.execute("SET session_replication_role = replica")
        for start in range(0, missing, 100_000):
            n = min(100_000, missing - start)
            with transaction.atomic():
                cursor.execute(
                    "WITH t AS (INSERT INTO hordak_transaction (uuid, timestamp, date, description)"
                    " SELECT gen_random_uuid(), now(), current_date, 'fill'"
                    " FROM generate_series(1, %s) RETURNING id)"
                    " INSERT INTO hordak_leg (uuid, transaction_id, account_id, credit, debit,"
                    " currency, description)"
                    " SELECT gen_random_uuid(), t.id, legs.a, legs.c, legs.d, 'USD', ''"
                    " FROM t, (VALUES (%s::bigint, NULL::numeric, 0.01::numeric),"
                    " (%s::bigint, 0.01::numeric, NULL::numeric)) AS legs(a, c, d)",
                    [n, stripe.pk, host.pk],
                )
        cursor.execute("ANALYZE hordak_leg")
    medians = []
    for _ in range(runs):
        samples = []
        for _ in range(20):
            started = time.perf_counter()
            host.get_balance()
            samples.append((time.perf_counter() - started) * 1000)
        medians.append(statistics.median(samples))
    return medians


def main() -> None:
    command = sys.argv[1]
    if command == "setup":
        setup()
        print(json.dumps({"ok": True}))
    elif command == "post":
        tps = post(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        print(json.dumps({"tps": tps}))
    elif command == "read":
        print(json.dumps({"ms": read(int(sys.argv[2]), int(sys.argv[3]))}))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
