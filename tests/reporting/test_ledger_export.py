"""Ledger exports: every entry with its transaction, account and metadata, streamed."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

from ledger.chart import user_code
from ledger.services import ensure_account
from reporting import services
from reporting.models import ReportStatus
from reporting.storage import open_stored
from tests.factories import HostFactory

from .conftest import at, post_charge, refreshed, stored_text, tag

BASE_DIR = Path(settings.BASE_DIR)
PEAK_RSS_CAP_MB = 400


@pytest.fixture
def sales(host, artist):
    run = tag()
    post_charge(
        charge_id=f"ex1_{run}",
        host=host,
        currency="USD",
        gross=10_000,
        shares={host: 6300, artist: 2700},
        platform_fee=1000,
        effective_at=at(2025, 1, 10),
    )
    post_charge(
        charge_id=f"ex2_{run}",
        host=host,
        currency="KWD",
        gross=12_345,
        shares={host: 11_111},
        platform_fee=1234,
        effective_at=at(2025, 1, 11),
    )
    return run


@pytest.mark.django_db
def test_a_host_exports_their_entries_with_transaction_account_and_metadata(sales, host, run_job):
    report = services.request_report(
        requester=host, report_type="ledger_export", report_format="csv"
    )
    report = run_job(report)
    assert report.status == ReportStatus.DONE, report.error
    rows = list(csv.DictReader(io.StringIO(stored_text(report))))

    assert {r["user_id"] for r in rows} == {str(host.pk)}  # the artist's leg is not theirs
    by_currency = {r["currency"]: r for r in rows}
    usd, kwd = by_currency["USD"], by_currency["KWD"]
    assert usd["account"] == user_code(host.pk, "payable", "USD")
    assert (usd["type"], usd["amount_cents"], usd["amount"]) == ("credit", "6300", "63.00 USD")
    assert kwd["amount"] == "11.111 KWD"  # three decimals
    assert usd["idempotency_key"] == f"charge:ex1_{sales}"
    assert usd["event_source"] == "stripe_charge"
    assert usd["effective_at"].startswith("2025-01-10T12:00:00")
    assert json.loads(usd["metadata"]) == {"host_id": str(host.pk)}
    assert report.row_count == len(rows) == 2
    with open_stored(report.location) as handle:
        content = handle.read()
    assert report.size_bytes == len(content)
    assert report.checksum_sha256 == hashlib.sha256(content).hexdigest()


@pytest.mark.django_db
def test_an_admin_exports_one_currency_as_json(sales, host, artist, admin_user, run_job):
    report = services.request_report(
        requester=admin_user,
        report_type="ledger_export",
        report_format="json",
        currency="usd",
        user_id=artist.pk,
    )
    report = run_job(report)
    document = json.loads(stored_text(report))

    assert document["parameters"]["currency"] == "USD"
    assert document["row_count"] == len(document["entries"]) == 1
    entry = document["entries"][0]
    assert (entry["user_id"], entry["amount_cents"], entry["amount"]) == (
        str(artist.pk),
        2700,
        "27.00 USD",
    )
    assert entry["metadata"] == {"host_id": str(host.pk)}
    assert report.content_type == "application/json"


def grow_entries(owner_connection, *, host, transactions: int, run: str) -> None:
    """`transactions` balanced two-leg transactions on the host's own accounts (held ->
    payable, 1 cent each), written as the owner in one statement with per-row triggers off
    (as benchmarks/run.py's grow_ledger_to does); the balances are then set to match."""
    payable, held = user_code(host.pk, "payable", "USD"), user_code(host.pk, "held", "USD")
    accounts = {code: ensure_account(code=code).pk for code in (payable, held)}
    with owner_connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute(
            "WITH t AS (INSERT INTO ledger_transactions (idempotency_key, request_hash,"
            " event_source, effective_at, metadata, created_at)"
            " SELECT 'fill:' || %s || ':' || n, '', 'fill', now(), jsonb_build_object('n', n),"
            " now() FROM generate_series(1, %s) AS n RETURNING id)"
            " INSERT INTO ledger_entries (transaction_id, account_id, user_id, amount_cents,"
            " currency, type, event_source, created_at)"
            " SELECT t.id, legs.account, %s, 1, 'USD', legs.side, 'fill', now()"
            " FROM t, (VALUES (%s::bigint, 'debit'), (%s::bigint, 'credit'))"
            " AS legs(account, side)",
            [run, transactions, host.pk, accounts[held], accounts[payable]],
        )
        cur.execute(
            "UPDATE ledger_accounts SET balance_cents = CASE WHEN id = %s THEN %s ELSE %s END"
            " WHERE id IN (%s, %s)",
            [accounts[payable], transactions, -transactions, accounts[payable], accounts[held]],
        )
        cur.execute("SET session_replication_role = DEFAULT")
    owner_connection.commit()


@pytest.mark.xdist_group("reporting-committed")
@pytest.mark.usefixtures("committed_db")
def test_a_200k_entry_export_runs_in_bounded_memory(owner_connection, report_files, monkeypatch):
    host = HostFactory()
    grow_entries(owner_connection, host=host, transactions=100_000, run=tag())
    # The job runs in the subprocess below, not from the queue.
    monkeypatch.setattr(services, "enqueue_report", lambda *, report_id: "")
    report = services.request_report(
        requester=host, report_type="ledger_export", report_format="csv"
    )

    env = {
        **os.environ,
        "TREASURY_DATABASE_NAME": connections["default"].settings_dict["NAME"],
        "REPORTING_FILES_DIR": str(report_files),
        "REPORTING_EXPORT_CHUNK_SIZE": "5000",
    }
    finished = subprocess.run(  # noqa: S603  (our own module, our interpreter)
        [sys.executable, "-m", "tests.reporting.export_worker", str(report.pk)],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    measured = json.loads(finished.stdout.strip().splitlines()[-1])
    print(
        f"\n200k-entry export: {measured['seconds']:.1f} s,"
        f" {200_000 / measured['seconds']:,.0f} rows/s,"
        f" peak RSS {measured['peak_rss_kb'] / 1024:.0f} MB"
        f" (after start-up {measured['baseline_rss_kb'] / 1024:.0f} MB)"
    )
    assert measured["status"] == ReportStatus.DONE, measured
    assert measured["peak_rss_kb"] < PEAK_RSS_CAP_MB * 1024

    done = refreshed(report)
    assert done.row_count == 200_000
    digest = hashlib.sha256()
    lines = 0
    with open_stored(done.location) as handle:
        for line in handle:
            digest.update(line)
            lines += 1
    assert lines == 200_001  # the header and one line per entry
    assert digest.hexdigest() == done.checksum_sha256
