"""1099 figures from a known ledger, worked by hand.

Tax year Y (this year, so that the refund, which the ledger dates `now`, falls in it):

ch1 (Jan): 100.00 USD; platform 10.00; host 63.00, artist 27.00; Stripe's 3.20 borne by the
    recipients 70/30: host 2.24, artist 0.96.
ch2 (Mar): 50.00 USD; platform 5.00; host 45.00; Stripe fee borne by the platform.
ch3 (Mar): 20.00 USD; platform 2.00; host 12.60, artist 5.40.
ch4 (Dec 31, 23:00 UTC): 10.00 USD; host 9.00.
ch5 (Dec 31 of Y-1) and ch6 (Jan 1 of Y+1): 9.00 each to the host, outside the year.
ch7 (Feb): 12000 JPY; platform 1200; artist 10800.

Refund of a quarter of ch1 (reverse_transaction): ch1's debits are 100.00 + 2.24 + 0.96 =
103.20 and a quarter is 25.80, split exactly by leg: the host gives back 15.75 of his 63.00
and gets back 0.56 of his 2.24 fee (refund 15.19); the artist 6.75 and 0.24 (refund 6.51).
Dispute on ch2, lost, borne by the host: 45.00. Dispute on ch3 opened then won: the artist's
5.40 goes and comes back (0). Payouts: the host 50.00; the artist 10.00 that failed and was
reversed (0). A manual adjustment credits the host 1.00; a risk hold moves 3.00 of the
host's payable to held (other: -3.00).

Host:   gross 63.00 + 45.00 + 12.60 + 9.00 = 129.60 (4 charges); fees 2.24; refunds 15.19;
        dispute losses 45.00; adjustments 1.00; net 129.60 - 2.24 - 15.19 - 45.00 + 1.00 =
        68.17; payouts 50.00; other -3.00; payable change 68.17 - 50.00 - 3.00 = 15.17.
        Monthly gross: January 63.00, March 57.60, December 9.00.
Artist: gross 27.00 + 5.40 = 32.40 (2 charges); fees 0.96; refunds 6.51; net 24.93.
        JPY: gross and net 10800 JPY (February).
"""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction

import pytest
from django.utils import timezone

from ledger.chart import platform_code, user_code
from ledger.selectors import account_balance
from ledger.services import credit, debit, post_transaction, reverse_transaction
from reporting import services
from reporting.models import ReportStatus
from treasury.rls import system_context

from .conftest import at, post_charge, stored_text, tag

pytestmark = pytest.mark.django_db

MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]


@pytest.fixture
def known_ledger(host, artist):
    year = timezone.now().year
    run = tag()
    usd = "USD"
    ch1 = post_charge(
        charge_id=f"ch1_{run}",
        host=host,
        currency=usd,
        gross=10_000,
        shares={host: 6300, artist: 2700},
        platform_fee=1000,
        stripe_fee=320,
        recipient_fees={host: 224, artist: 96},
        effective_at=at(year, 1, 10),
    )
    post_charge(
        charge_id=f"ch2_{run}",
        host=host,
        currency=usd,
        gross=5000,
        shares={host: 4500},
        platform_fee=500,
        stripe_fee=175,
        effective_at=at(year, 3, 5),
    )
    post_charge(
        charge_id=f"ch3_{run}",
        host=host,
        currency=usd,
        gross=2000,
        shares={host: 1260, artist: 540},
        platform_fee=200,
        stripe_fee=88,
        effective_at=at(year, 3, 20),
    )
    post_charge(
        charge_id=f"ch4_{run}",
        host=host,
        currency=usd,
        gross=1000,
        shares={host: 900},
        platform_fee=100,
        effective_at=at(year, 12, 31, hour=23),
    )
    post_charge(
        charge_id=f"ch5_{run}",
        host=host,
        currency=usd,
        gross=1000,
        shares={host: 900},
        platform_fee=100,
        effective_at=at(year - 1, 12, 31, hour=23).replace(minute=59, second=59),
    )
    post_charge(
        charge_id=f"ch6_{run}",
        host=host,
        currency=usd,
        gross=1000,
        shares={host: 900},
        platform_fee=100,
        effective_at=at(year + 1, 1, 1, hour=0),
    )
    post_charge(
        charge_id=f"ch7_{run}",
        host=artist,
        currency="JPY",
        gross=12_000,
        shares={artist: 10_800},
        platform_fee=1200,
        stripe_fee=360,
        effective_at=at(year, 2, 14),
    )
    reverse_transaction(
        transaction=ch1,
        ratio=Fraction(1, 4),
        idempotency_key=f"refund:re1_{run}",
        event_source="stripe_refund",
    )
    host_payable = user_code(host.pk, "payable", usd)
    artist_payable = user_code(artist.pk, "payable", usd)
    stripe = platform_code("stripe_balance", usd)
    post_transaction(
        idempotency_key=f"dispute:dp1_{run}:lost",
        event_source="stripe_dispute",
        effective_at=at(year, 4, 2),
        entries=[
            debit(host_payable, 4500, usd),
            debit(platform_code("dispute_losses", usd), 500, usd),
            credit(stripe, 5000, usd),
        ],
    )
    post_transaction(
        idempotency_key=f"dispute:dp2_{run}:open",
        event_source="stripe_dispute",
        effective_at=at(year, 4, 3),
        entries=[debit(artist_payable, 540, usd), credit(stripe, 540, usd)],
    )
    post_transaction(
        idempotency_key=f"dispute:dp2_{run}:won",
        event_source="stripe_dispute",
        effective_at=at(year, 5, 3),
        entries=[debit(stripe, 540, usd), credit(artist_payable, 540, usd)],
    )
    post_transaction(
        idempotency_key=f"payout:p1_{run}:reserve",
        event_source="payout",
        effective_at=at(year, 6, 1),
        entries=[
            debit(host_payable, 5000, usd),
            credit(platform_code("payout_clearing", usd), 5000, usd),
        ],
    )
    post_transaction(
        idempotency_key=f"payout:p1_{run}:paid",
        event_source="payout",
        effective_at=at(year, 6, 2),
        entries=[
            debit(platform_code("payout_clearing", usd), 5000, usd),
            credit(stripe, 5000, usd),
        ],
    )
    failed = post_transaction(
        idempotency_key=f"payout:p2_{run}:reserve",
        event_source="payout",
        effective_at=at(year, 6, 1),
        entries=[
            debit(artist_payable, 1000, usd),
            credit(platform_code("payout_clearing", usd), 1000, usd),
        ],
    )
    reverse_transaction(transaction=failed, idempotency_key=f"payout:p2_{run}:failed")
    post_transaction(
        idempotency_key=f"adjustment:{run}",
        event_source="manual_adjustment",
        effective_at=at(year, 7, 1),
        metadata={"reason": "goodwill"},
        entries=[
            debit(platform_code("adjustments", usd), 100, usd),
            credit(host_payable, 100, usd),
        ],
    )
    post_transaction(
        idempotency_key=f"hold:{run}",
        event_source="risk_hold",
        effective_at=at(year, 8, 1),
        entries=[debit(host_payable, 300, usd), credit(user_code(host.pk, "held", usd), 300, usd)],
    )
    return year


def payee(document: dict, user, currency: str) -> dict:
    rows = [
        p for p in document["payees"] if p["payee_id"] == str(user.pk) and p["currency"] == currency
    ]
    assert len(rows) == 1, rows
    return rows[0]


def generate(requester, run_job, report_format: str = "json", **parameters):
    report = services.request_report(
        requester=requester, report_type="1099", report_format=report_format, **parameters
    )
    report = run_job(report)
    assert report.status == ReportStatus.DONE, report.error
    return report


def test_known_ledger_gives_exact_1099_figures(known_ledger, host, artist, admin_user, run_job):
    report = generate(admin_user, run_job, tax_year=known_ledger)
    document = json.loads(stored_text(report))

    assert document["tax_year"] == known_ledger
    figures = payee(document, host, "USD")
    assert {
        k: v for k, v in figures.items() if k.endswith("_cents") and k != "monthly_gross_cents"
    } == {
        "gross_cents": 12_960,
        "fees_cents": 224,
        "refunds_cents": 1519,
        "dispute_losses_cents": 4500,
        "adjustments_cents": 100,
        "net_cents": 6817,
        "payouts_cents": 5000,
        "other_cents": -300,
        "payable_change_cents": 1517,
    }
    assert figures["transactions"] == 4
    assert figures["gross"] == "129.60 USD"
    assert figures["net"] == "68.17 USD"
    assert figures["other"] == "-3.00 USD"
    assert figures["above_threshold"] is False
    monthly = {**dict.fromkeys(MONTHS, 0), "january": 6300, "march": 5760, "december": 900}
    assert figures["monthly_gross_cents"] == monthly
    assert figures["monthly_gross"]["march"] == "57.60 USD"
    assert sum(figures["monthly_gross_cents"].values()) == figures["gross_cents"]
    # The payable account's change over the year reconciles with its balance (ch5 and ch6,
    # outside the year, add 9.00 each).
    with system_context():
        assert account_balance(code=user_code(host.pk, "payable", "USD")) == 1517 + 1800

    artist_usd = payee(document, artist, "USD")
    assert (
        artist_usd["gross_cents"],
        artist_usd["fees_cents"],
        artist_usd["refunds_cents"],
        artist_usd["dispute_losses_cents"],
        artist_usd["payouts_cents"],
        artist_usd["net_cents"],
        artist_usd["transactions"],
    ) == (3240, 96, 651, 0, 0, 2493, 2)
    assert artist_usd["monthly_gross_cents"]["january"] == 2700
    assert artist_usd["monthly_gross_cents"]["march"] == 540


def test_jpy_amounts_are_formatted_with_no_decimals(known_ledger, artist, run_job):
    report = generate(artist, run_job, report_format="csv", tax_year=known_ledger, currency="JPY")
    rows = list(csv.DictReader(io.StringIO(stored_text(report))))

    assert len(rows) == 1  # the artist asked: only the artist's own figures, only JPY
    row = rows[0]
    assert row["payee_id"] == str(artist.pk)
    assert (row["gross_cents"], row["gross"]) == ("10800", "10800 JPY")
    assert (row["net_cents"], row["net"]) == ("10800", "10800 JPY")
    assert row["gross_february"] == "10800 JPY"
    assert row["gross_january"] == "0 JPY"
    assert row["above_threshold"] == ""  # the threshold is in USD: nothing is converted
    assert report.row_count == 1
    assert report.content_type == "text/csv; charset=utf-8"


def test_payees_above_the_configured_threshold_are_flagged(
    known_ledger, host, artist, admin_user, run_job, settings
):
    settings.REPORTING_1099_THRESHOLD_CENTS = 10_000
    settings.REPORTING_1099_MIN_TRANSACTIONS = 3
    report = generate(admin_user, run_job, tax_year=known_ledger, currency="USD")
    document = json.loads(stored_text(report))

    assert payee(document, host, "USD")["above_threshold"] is True  # 129.60 > 100.00, 4 > 3
    assert payee(document, artist, "USD")["above_threshold"] is False  # 32.40
    assert document["threshold"] == {"gross_cents": 10_000, "currency": "USD", "transactions": 3}


def test_a_payee_sees_only_their_own_figures(known_ledger, host, artist, run_job):
    report = generate(host, run_job, tax_year=known_ledger)
    document = json.loads(stored_text(report))

    assert {p["payee_id"] for p in document["payees"]} == {str(host.pk)}
    assert report.parameters["user_id"] == str(host.pk)


def test_a_year_without_postings_gives_an_empty_report(host, run_job):
    report = generate(host, run_job, report_format="csv", tax_year=2001)

    assert report.row_count == 0
    assert stored_text(report).splitlines()[0].startswith("payee_id,email,display_name,currency")
