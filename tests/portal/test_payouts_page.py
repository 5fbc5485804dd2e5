"""Requesting a payout from the page: amounts typed in the currency's units (read in the
reader's locale, a decimal comma as a decimal mark) become exact minor units; the form's
POST only shows a confirmation (amount, fee, what arrives, when), and the payout is
requested by confirming it; a bad or ambiguous amount, one over the available balance, or
no completed Stripe account is a field error on the form, and nothing is written."""

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


def confirmation_of(response) -> str:
    assert response.status_code == 200, response.content
    [token] = re.findall(r'name="confirmation" value="([^"]+)"', response.content.decode())
    return token


def request_payout(client, form: dict[str, str], **headers: str):
    """The form's POST (a confirmation page), then the confirmation's POST."""
    token = confirmation_of(client.post("/me/payouts/", form, **headers))
    return client.post("/me/payouts/", {"confirmation": token})


@pytest.fixture
def earning_host(host):
    """120.00 USD available, a completed Stripe account."""
    book_sale(host, 12000)
    completed_account(host)
    return host


def test_a_payout_of_a_typed_amount_reserves_exactly_that_many_cents(signed_in, earning_host):
    client = signed_in(earning_host)
    response = request_payout(client, payout_form("45.67"))
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
    first = request_payout(client, payout_form("10"))
    second = request_payout(client, payout_form("10"))
    assert first["Location"] == second["Location"]
    with system_context():
        assert Payout.objects.filter(user=earning_host).count() == 1


def test_everything_available_pays_out_the_whole_available_balance(signed_in, earning_host):
    response = request_payout(signed_in(earning_host), payout_form(everything="on"))
    assert response.status_code == 302
    with system_context():
        assert Payout.objects.get(user=earning_host).amount_cents == 12000


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("12.3456", "USD amounts have 2 decimal places"),
        ("12.345", "is ambiguous"),
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
    assert "$120.01 exceeds the available balance of $120.00" in error
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
    accepted = request_payout(client, payout_form("1,500", currency="JPY"))
    assert accepted.status_code == 302
    with system_context():
        assert Payout.objects.get(user=host).amount_cents == 1500


# --- one way to read an amount, and a confirmation before anything is requested ---


@pytest.mark.parametrize(
    ("amount", "accept_language", "cents"),
    [
        ("0,50", "en-US,en;q=0.9", 50),  # a phone keypad's decimal comma, whatever the locale
        ("0,50", "de-DE", 50),
        ("12,5", "en-US", 1250),
        ("12.50", "de-DE", 1250),  # a decimal point in a German browser: still 12.50
        ("1.234,56", "en-US", 123456),
        ("1,234.56", "de-DE", 123456),
        ("1 234,56", "fr-FR", 123456),
        ("1.000", "de-DE", 100000),  # the locale's thousands separator
        ("1,000", "en-US", 100000),
    ],
)
def test_an_amount_reads_one_way_in_any_locale(signed_in, host, amount, accept_language, cents):
    book_sale(host, 200000)
    completed_account(host)
    response = request_payout(
        signed_in(host), payout_form(amount), HTTP_ACCEPT_LANGUAGE=accept_language
    )
    assert response.status_code == 302
    with system_context():
        assert Payout.objects.get(user=host).amount_cents == cents


@pytest.mark.parametrize(
    ("amount", "accept_language"),
    [("1,000", "de-DE"), ("1.000", "en-US"), ("1,500", "fr-FR"), ("2.500", "fr-FR")],
)
def test_an_amount_that_reads_two_ways_is_refused_and_changes_nothing(
    signed_in, earning_host, amount, accept_language
):
    before = footprint()
    response = signed_in(earning_host).post(
        "/me/payouts/", payout_form(amount), HTTP_ACCEPT_LANGUAGE=accept_language
    )
    assert response.status_code == 400
    [(field, error)] = field_errors(response.content)
    assert field == "amount" and "is ambiguous" in error
    assert "without a thousands separator" in error
    assert footprint() == before


def test_the_form_only_shows_a_confirmation_and_requests_nothing(signed_in, earning_host):
    before = footprint()
    response = signed_in(earning_host).post(
        "/me/payouts/", payout_form("0,50"), HTTP_ACCEPT_LANGUAGE="en-US"
    )
    page = response.content.decode()
    assert response.status_code == 200 and "Confirm your payout" in page
    assert re.search(r'data-testid="confirm-amount"><strong>\$0\.50<', page)
    assert re.search(r'data-testid="confirm-net"><strong>\$0\.50<', page)
    assert "Confirm payout of $0.50" in page
    assert "business days" in page
    assert footprint() == before


def test_an_instant_payout_is_confirmed_with_its_fee_and_what_arrives(signed_in, earning_host):
    client = signed_in(earning_host)
    response = client.post("/me/payouts/", payout_form("100", method="instant"))
    page = response.content.decode()
    # 1.5% of 100.00, at least 0.50: 1.50; 98.50 arrives, within minutes.
    assert 'data-testid="confirm-fee">$1.50' in page
    assert re.search(r'data-testid="confirm-net"><strong>\$98\.50<', page)
    assert "30 minutes" in page
    client.post("/me/payouts/", {"confirmation": confirmation_of(response)})
    with system_context():
        payout = Payout.objects.get(user=earning_host)
    assert (payout.amount_cents, payout.fee_cents, payout.method) == (10000, 150, "instant")


def test_everything_available_is_confirmed_as_the_amount_it_is(signed_in, earning_host):
    response = signed_in(earning_host).post("/me/payouts/", payout_form(everything="on"))
    assert re.search(r'data-testid="confirm-amount"><strong>\$120\.00<', response.content.decode())


def test_a_confirmation_that_was_altered_or_is_someone_elses_requests_nothing(
    signed_in, earning_host
):
    from tests.factories import HostFactory

    token = confirmation_of(signed_in(earning_host).post("/me/payouts/", payout_form("10")))
    before = footprint()
    altered = signed_in(earning_host).post("/me/payouts/", {"confirmation": token[:-2] + "xx"})
    assert altered.status_code == 400 and b"no longer valid" in altered.content
    other = HostFactory()
    book_sale(other, 5000)
    completed_account(other)
    before = footprint()
    stolen = signed_in(other).post("/me/payouts/", {"confirmation": token})
    assert stolen.status_code == 400 and b"no longer valid" in stolen.content
    assert footprint() == before


def test_confirming_twice_is_one_payout(signed_in, earning_host):
    client = signed_in(earning_host)
    token = confirmation_of(client.post("/me/payouts/", payout_form("10")))
    first = client.post("/me/payouts/", {"confirmation": token})
    second = client.post("/me/payouts/", {"confirmation": token})
    assert first["Location"] == second["Location"]
    with system_context():
        assert Payout.objects.filter(user=earning_host).count() == 1


def test_a_balance_spent_between_quote_and_confirmation_is_a_form_error(signed_in, earning_host):
    client = signed_in(earning_host)
    late = confirmation_of(client.post("/me/payouts/", payout_form("100")))
    request_payout(client, payout_form("50", idempotency_key="page:first"))
    before = footprint()
    response = client.post("/me/payouts/", {"confirmation": late})
    assert response.status_code == 400
    [(field, error)] = field_errors(response.content)
    assert field == "amount" and "exceeds the available balance" in error
    assert b'value="100.00"' in response.content  # the form comes back with the amount
    assert footprint() == before


def test_change_on_the_confirmation_brings_the_typed_amount_back(signed_in, earning_host):
    client = signed_in(earning_host)
    response = client.post(
        "/me/payouts/", payout_form("12,5", method="instant"), HTTP_ACCEPT_LANGUAGE="de-DE"
    )
    [query] = set(re.findall(r'href="/me/payouts/\?([^"]+)"', response.content.decode()))
    assert "amount=12%2C50" in query
    form = client.get(f"/me/payouts/?{query.replace('&amp;', '&')}").content.decode()
    assert 'value="12,50"' in form
    assert re.search(r'<input type="radio" name="method" value="instant"[^>]* checked', form)
