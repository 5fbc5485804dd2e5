"""The overview and the ledger page: balances per currency, daily earnings from the
ledger for the chart, and the entries with filters and pages."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime

import pytest

from portal.selectors import daily_earnings
from tests.factories import HostFactory
from treasury.rls import user_context

from .conftest import book_sale

pytestmark = pytest.mark.django_db


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def test_daily_earnings_sum_each_days_sales_net_of_the_fees_the_host_bore(host):
    today = date(2026, 3, 31)
    book_sale(host, 9000, at=at(today, 0, 0))
    book_sale(host, 4500, fee_cents=145, at=at(today, 23, 59))  # 43.55 net
    book_sale(host, 1000, at=at(date(2026, 3, 30)))
    book_sale(host, 777, at=at(date(2026, 3, 2)))  # the window's first day
    book_sale(host, 5000, at=at(date(2026, 3, 1)))  # one day too old
    book_sale(host, 3000, "EUR", at=at(today))  # another currency
    book_sale(HostFactory(), 8888, at=at(today))  # another host

    with user_context(host):
        earned = daily_earnings(user=host, currency="USD", days=30, today=today)

    assert len(earned.days) == 30 and earned.days[0] == date(2026, 3, 2)
    assert earned.days[-1] == today
    assert earned.cents[-1] == 9000 + 4500 - 145
    assert earned.cents[-2] == 1000
    assert earned.cents[0] == 777
    assert sum(earned.cents[1:-2]) == 0
    assert earned.total_cents == 9000 + 4355 + 1000 + 777


def test_the_overview_shows_balances_and_the_chart_data(signed_in, host):
    book_sale(host, 12345)
    book_sale(host, 5000, fee_cents=100)
    book_sale(host, 700, "JPY")
    client = signed_in(host)
    page = client.get("/me/").content.decode()
    assert 'data-testid="available-USD">$172.45<' in page
    assert 'data-testid="balance-USD">$172.45<' in page
    assert 'data-testid="available-JPY">¥700<' in page
    chart = json.loads(re.search(r'id="earnings-data"[^>]*>([^<]*)<', page).group(1))
    assert (chart["currency"], chart["digits"], len(chart["cents"])) == ("JPY", 0, 30)
    assert chart["cents"][-1] == 700
    usd = client.get("/me/?currency=USD&days=90").content.decode()
    chart = json.loads(re.search(r'id="earnings-data"[^>]*>([^<]*)<', usd).group(1))
    assert (chart["currency"], chart["digits"], len(chart["cents"])) == ("USD", 2, 90)
    assert chart["cents"][-1] == 12345 + 4900
    assert "vendor/chart.umd.js" in usd


def test_a_host_without_money_sees_an_empty_overview(signed_in, host):
    page = signed_in(host).get("/me/").content
    assert b"No money yet" in page and b"earnings-chart" not in page


def entry_rows(content: bytes) -> list[str]:
    body = content.decode().split("<tbody>", 1)[-1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)


def test_entries_are_filtered_by_currency_and_kind_and_paged(signed_in, host):
    for n in range(27):
        book_sale(host, 100 + n)
    book_sale(host, 5000, fee_cents=150)
    book_sale(host, 900, "EUR")
    client = signed_in(host)

    first = client.get("/me/ledger/?currency=USD&kind=stripe_charge")
    assert first.status_code == 200
    assert b"29 entries" in first.content  # 27 sales, and one sale's credit and fee debit
    assert len(entry_rows(first.content)) == 25
    assert b"currency=USD&amp;kind=stripe_charge&amp;page=2" in first.content
    second = client.get("/me/ledger/?currency=USD&kind=stripe_charge&page=2")
    assert len(entry_rows(second.content)) == 4
    assert b"Page 2 of 2" in second.content

    eur = client.get("/me/ledger/?currency=EUR").content
    assert len(entry_rows(eur)) == 1 and "+€9.00".encode() in eur
    fee = client.get("/me/ledger/?currency=USD").content
    assert "\u2212$1.50".encode() in fee  # a minus sign: money out
    assert b"No entries match" in client.get("/me/ledger/?kind=refund").content


def test_entries_are_filtered_by_date(signed_in, host):
    book_sale(host, 4242)
    client = signed_in(host)
    today = datetime.now(UTC).date().isoformat()
    assert b"+$42.42" in client.get(f"/me/ledger/?date_from={today}&date_to={today}").content
    later = client.get("/me/ledger/?date_from=2999-01-01").content
    assert b"No entries match" in later


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("date_from=2026-02-01&date_to=2026-01-01", "must not be before the start date"),
        ("date_from=yesterday", "Enter a valid date."),
        ("kind=bribe", "Select a valid choice."),
        ("currency=XXX", "Select a valid choice."),
    ],
)
def test_bad_filters_are_field_errors(signed_in, host, query, message):
    book_sale(host, 100)
    response = signed_in(host).get(f"/me/ledger/?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()
