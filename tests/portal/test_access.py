"""Who may see the pages: signed-in hosts and artists, each only their own objects;
another user's payout, split rule or report is a 404, as in the API. CSRF is on."""

from __future__ import annotations

import pytest
from django.test import Client

from payouts.services import initiate_payout
from reporting.services import request_report
from tests.factories import AdminFactory, ArtistFactory, HostFactory, SplitRuleFactory, UserFactory
from treasury.rls import user_context

from .conftest import book_sale, completed_account, footprint

pytestmark = pytest.mark.django_db

PAGES = [
    "/me/",
    "/me/ledger/",
    "/me/payouts/",
    "/me/splits/",
    "/me/splits/new/",
    "/me/account/",
    "/me/reports/",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_a_stranger_to_the_login_form(path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/me/login/?next={path}"


def test_a_post_without_a_session_changes_nothing():
    before = footprint()
    response = Client().post("/me/payouts/", {"currency": "USD", "amount": "10"})
    assert response.status_code == 302 and response["Location"].startswith("/me/login/")
    assert footprint() == before


def test_the_login_form_signs_a_host_in_and_out(host):
    client = Client()
    page = client.get("/me/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    wrong = client.post("/me/login/", {"username": host.email, "password": "not-it"})
    assert wrong.status_code == 200 and b"correct email" in wrong.content
    signed_in = client.post(
        "/me/login/",
        {"username": host.email.upper(), "password": "correct-horse-battery-staple"},
    )
    assert (signed_in.status_code, signed_in["Location"]) == (302, "/me/")
    assert client.get("/me/").status_code == 200
    signed_out = client.post("/me/logout/")
    assert (signed_out.status_code, signed_out["Location"]) == (302, "/me/login/")
    assert client.get("/me/").status_code == 302


@pytest.mark.parametrize("factory", [UserFactory, AdminFactory], ids=["buyer", "admin"])
def test_buyers_and_admins_are_told_the_pages_are_not_theirs(factory, signed_in):
    client = signed_in(factory())
    response = client.get("/me/")
    assert response.status_code == 403
    assert b"for hosts and artists" in response.content


def test_an_artist_has_the_pages_too(signed_in):
    artist = ArtistFactory()
    book_sale(artist, 2500)
    response = signed_in(artist).get("/me/")
    assert response.status_code == 200
    assert b"$25.00" in response.content


def test_another_hosts_payout_is_a_404(signed_in, host):
    other = HostFactory()
    book_sale(other, 10000)
    completed_account(other)
    with user_context(other):
        theirs = initiate_payout(
            user=other, amount_cents=1000, currency="USD", method="standard", idempotency_key="k"
        )
    client = signed_in(host)
    assert client.get(f"/me/payouts/{theirs.pk}/").status_code == 404
    assert client.get("/me/payouts/99999999999/").status_code == 404
    assert client.get(f"/me/payouts/{2**63}/").status_code == 404
    assert signed_in(other).get(f"/me/payouts/{theirs.pk}/").status_code == 200


def test_another_hosts_split_rule_is_a_404_to_read_edit_and_archive(signed_in, host):
    other = HostFactory()
    theirs = SplitRuleFactory(owner=other, name="Not yours")
    client = signed_in(host)
    before = footprint()
    assert client.get(f"/me/splits/{theirs.pk}/").status_code == 404
    assert client.get(f"/me/splits/{theirs.pk}/edit/").status_code == 404
    edit = client.post(
        f"/me/splits/{theirs.pk}/edit/",
        {
            "name": "Stolen",
            "recipients-TOTAL_FORMS": "1",
            "recipients-INITIAL_FORMS": "0",
            "recipients-0-recipient_id": str(host.pk),
            "recipients-0-share": "100",
        },
    )
    assert edit.status_code == 404
    assert client.post(f"/me/splits/{theirs.pk}/archive/").status_code == 404
    assert footprint() == before
    assert b"Not yours" not in client.get("/me/splits/?archived=1").content


def test_another_hosts_report_is_a_404(signed_in, host):
    other = HostFactory()
    with user_context(other):
        theirs = request_report(
            requester=other, report_type="1099", report_format="csv", tax_year=2024
        )
    client = signed_in(host)
    assert client.get(f"/me/reports/{theirs.pk}/").status_code == 404
    assert f"/me/reports/{theirs.pk}/".encode() not in client.get("/me/reports/").content
    assert signed_in(other).get(f"/me/reports/{theirs.pk}/").status_code == 200


def test_the_pages_show_only_the_signed_in_hosts_money(signed_in, host):
    other = HostFactory()
    book_sale(host, 1111)
    book_sale(other, 98765)
    client = signed_in(host)
    home = client.get("/me/").content
    assert b"$11.11" in home and b"$987.65" not in home
    entries = client.get("/me/ledger/").content
    assert b"$11.11" in entries and b"$987.65" not in entries


def test_forms_refuse_a_post_without_the_csrf_token(signed_in, host):
    book_sale(host, 10000)
    completed_account(host)
    client = signed_in(host, enforce_csrf_checks=True)
    before = footprint()
    payout = client.post(
        "/me/payouts/",
        {"currency": "USD", "amount": "10", "method": "standard", "idempotency_key": "page:x"},
    )
    rule = client.post("/me/splits/new/", {"name": "No token"})
    assert (payout.status_code, rule.status_code) == (403, 403)
    assert footprint() == before


def test_the_forms_carry_a_csrf_token(signed_in, host):
    completed_account(host)
    book_sale(host, 1000)
    client = signed_in(host)
    for path in ["/me/payouts/", "/me/splits/new/", "/me/reports/"]:
        assert b'name="csrfmiddlewaretoken"' in client.get(path).content, path
