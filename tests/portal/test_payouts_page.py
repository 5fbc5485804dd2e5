"""Requesting a payout from the page: amounts typed in the currency's units become exact
minor units; a bad amount, one over the available balance, or no completed Stripe account
is a field error on the form, and nothing is written."""

from __future__ import annotations

import re

import pytest

from payouts.models import Payout
from treasury.rls import system_context

from .conftest import book_sale, completed_account, footprint

pytestmark = pytest.mark.django_db


def payout_form(amount: str = "", **overrides: str) -> dict[str, str]:
    return {
        "currency": "USD",
        "amount": amount,
        "method": "standard",
        "idempotency_key": "page:test",
        **overrides,
    }


def field_errors(content: bytes) -> list[str]:
    return re.findall(r'<p class="error" id="id_(\w+)-error">([^<]*)</p>', content.decode())


@pytest.fixture
def earning_host(host):
    """120.00 USD available, a completed Stripe account."""
    book_sale(host, 12000)
    completed_account(host)
    return host


def test_a_payout_of_a_typed_amount_reserves_exactly_that_many_cents(signed_in, earning_host):
    client = signed_in(earning_host)
    response = client.post("/me/payouts/", payout_form("45.67"))
    with system_context():
        payout = Payout.objects.get(user=earning_host)
    assert (response.status_code, response["Location"]) == (302, f"/me/payouts/{payout.pk}/")
    assert (payout.amount_cents, payout.currency, payout.method) == (4567, "USD", "standard")
    assert payout.idempotency_key == "page:test"
    page = client.get(response["Location"]).content
    assert b"$45.67" in page and b"Payout #" in page
    assert b"$74.33" in client.get("/me/payouts/").content  # 120.00 - 45.67 available


def test_the_same_form_sent_twice_is_one_payout(signed_in, earning_host):
    client = signed_in(earning_host)
    first = client.post("/me/payouts/", payout_form("10"))
    second = client.post("/me/payouts/", payout_form("10"))
    assert first["Location"] == second["Location"]
    with system_context():
        assert Payout.objects.filter(user=earning_host).count() == 1


def test_everything_available_pays_out_the_whole_available_balance(signed_in, earning_host):
    response = signed_in(earning_host).post("/me/payouts/", payout_form(everything="on"))
    assert response.status_code == 302
    with system_context():
        assert Payout.objects.get(user=earning_host).amount_cents == 12000


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("12.345", "USD amounts have 2 decimal places"),
        ("-5", "must be more than zero"),
        ("0", "must be more than zero"),
        ("ten", "enter a number"),
        ("1e3", "enter a number"),
        ("NaN", "enter a number"),
        ("", "enter an amount"),
    ],
)
def test_a_bad_amount_is_a_field_error_and_changes_nothing(
    signed_in, earning_host, amount, message
):
    before = footprint()
    response = signed_in(earning_host).post("/me/payouts/", payout_form(amount))
    assert response.status_code == 400
    [(field, error)] = field_errors(response.content)
    assert field == "amount" and message in error
    assert footprint() == before


def test_more_than_available_is_a_field_error_and_changes_nothing(signed_in, earning_host):
    before = footprint()
    response = signed_in(earning_host).post("/me/payouts/", payout_form("120.01"))
    assert response.status_code == 400
    [(field, error)] = field_errors(response.content)
    assert field == "amount"
    assert "120.01 USD exceeds the available balance of 120.00 USD" in error
    assert footprint() == before


def test_an_instant_payout_that_does_not_cover_its_fee_is_a_field_error(signed_in, earning_host):
    before = footprint()
    response = signed_in(earning_host).post("/me/payouts/", payout_form("0.50", method="instant"))
    assert response.status_code == 400
    [(field, error)] = field_errors(response.content)
    assert field == "amount" and "does not cover its fee" in error
    assert footprint() == before


def test_a_currency_without_a_balance_is_refused(signed_in, earning_host):
    before = footprint()
    response = signed_in(earning_host).post("/me/payouts/", payout_form("1", currency="EUR"))
    assert response.status_code == 400
    assert ("currency", "Select a valid choice. EUR is not one of the available choices.") in (
        field_errors(response.content)
    )
    assert footprint() == before


def test_without_a_completed_stripe_account_the_page_says_so_and_changes_nothing(signed_in, host):
    book_sale(host, 5000)
    client = signed_in(host)
    page = client.get("/me/payouts/").content
    assert b"Set up payouts with Stripe" in page and b'id="payout-form"' not in page
    before = footprint()
    response = client.post("/me/payouts/", payout_form("10"))
    assert response.status_code == 400
    assert b"payouts need a connected Stripe account with onboarding completed" in (
        response.content
    )
    assert footprint() == before


def test_jpy_amounts_have_no_decimals(signed_in, host):
    book_sale(host, 5000, "JPY")
    completed_account(host)
    client = signed_in(host)
    refused = client.post("/me/payouts/", payout_form("100.5", currency="JPY"))
    assert refused.status_code == 400
    assert ("amount", "JPY amounts have no decimals") in field_errors(refused.content)
    accepted = client.post("/me/payouts/", payout_form("1,500", currency="JPY"))
    assert accepted.status_code == 302
    with system_context():
        assert Payout.objects.get(user=host).amount_cents == 1500
