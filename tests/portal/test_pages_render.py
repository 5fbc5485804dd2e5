"""Every page renders for a host with money, rules, payouts and reports."""

from __future__ import annotations

import pytest

from .conftest import book_sale, completed_account

pytestmark = pytest.mark.django_db


def test_every_page_renders_for_a_host_with_money(signed_in, host, artist):
    book_sale(host, 12345, fee_cents=345)
    book_sale(host, 5000, "EUR")
    completed_account(host)
    client = signed_in(host)
    for path in [
        "/me/",
        "/me/?currency=EUR&days=90",
        "/me/ledger/",
        "/me/ledger/?currency=USD&kind=stripe_charge&date_from=2020-01-01&date_to=2099-01-01",
        "/me/payouts/",
        "/me/splits/",
        "/me/splits/?archived=1",
        "/me/splits/new/",
        "/me/account/",
        "/me/reports/",
    ]:
        response = client.get(path)
        assert response.status_code == 200, (path, response.content[:2000])
