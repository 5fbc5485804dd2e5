"""Every refused payout request is a 4xx in the error shape and writes nothing: no payout,
no ledger transaction, no audit row, the payable untouched."""

from __future__ import annotations

import pytest

from tests.factories import ArtistFactory, HostFactory

from .conftest import DB, counts, earn, onboard, payable

pytestmark = DB


@pytest.fixture
def host(stripe_settings):
    """A host with a completed connected account and 90.00 USD payable."""
    host = HostFactory()
    onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000)
    return host


def refused(client, body, *, status, code, key=None, field=None):
    before = counts()
    headers = {"Idempotency-Key": key} if key else {}
    response = client.post("/api/payouts/initiate", body, format="json", headers=headers)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    if field:
        assert field in error["fields"], error
    assert counts() == before
    return error


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"amount_cents": 9001, "currency": "USD"}, 422, "insufficient_funds", "amount_cents"),
        ({"amount_cents": 0, "currency": "USD"}, 400, "invalid", "amount_cents"),
        ({"amount_cents": -100, "currency": "USD"}, 400, "invalid", "amount_cents"),
        ({"amount_cents": 10.5, "currency": "USD"}, 400, "invalid", "amount_cents"),
        ({"amount_cents": "100", "currency": "USD"}, 400, "invalid", "amount_cents"),
        ({"amount_cents": True, "currency": "USD"}, 400, "invalid", "amount_cents"),
        ({"currency": "USD"}, 400, "invalid", "amount_cents"),
        ({"amount_cents": 100, "currency": "XYZ"}, 400, "invalid", "currency"),
        ({"amount_cents": 100}, 400, "invalid", "currency"),
        ({"amount_cents": 100, "currency": "EUR"}, 422, "insufficient_funds", "amount_cents"),
        ({"amount_cents": "all", "currency": "EUR"}, 422, "insufficient_funds", "amount_cents"),
        ({"amount_cents": 100, "currency": "USD", "method": "wire"}, 400, "invalid", "method"),
        # the 0.50 minimum fee eats a 0.50 instant payout whole
        ({"amount_cents": 50, "currency": "USD", "method": "instant"}, 400, "invalid", None),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(
    host, client_for, body, status, code, field, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        refused(client_for(host), body, status=status, code=code, field=field)
    assert callbacks == []
    assert payable(host) == 9000


def test_an_amount_over_the_available_balance_says_how_much_is_available(host, client_for):
    error = refused(
        client_for(host),
        {"amount_cents": 9001, "currency": "USD"},
        status=422,
        code="insufficient_funds",
    )
    assert "90.01 USD exceeds the available balance of 90.00 USD" in error["message"]
    assert error["fields"]["amount_cents"] == ["at most 9000"]


def test_a_reused_idempotency_key_with_another_amount_is_a_409(
    host, client_for, django_capture_on_commit_callbacks
):
    client = client_for(host)
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(
            "/api/payouts/initiate",
            {"amount_cents": 1000, "currency": "USD"},
            format="json",
            headers={"Idempotency-Key": "payout-1"},
        )
    assert first.status_code == 201
    for other in (
        {"amount_cents": 2000, "currency": "USD"},
        {"amount_cents": 1000, "currency": "USD", "method": "instant"},
        {"amount_cents": "all", "currency": "USD"},
    ):
        refused(client, other, status=409, code="idempotency_conflict", key="payout-1")
    assert payable(host) == 8000


def test_without_an_onboarded_account_there_is_no_payout(stripe_settings, client_for):
    from treasury.rls import system_context
    from treasury.stripe.services import start_onboarding

    never_onboarded = HostFactory()
    pending = ArtistFactory()
    with system_context():
        start_onboarding(user=pending)  # the account exists, onboarding is not completed
    for user in (never_onboarded, pending):
        earn(stripe_settings, user, 10000)
        error = refused(
            client_for(user),
            {"amount_cents": 1000, "currency": "USD"},
            status=409,
            code="conflict",
            field="stripe_account",
        )
        assert "onboarding completed" in error["message"]


def test_a_buyer_cannot_ask_for_a_payout(stripe_settings, client_for, buyer):
    refused(
        client_for(buyer),
        {"amount_cents": 100, "currency": "USD"},
        status=403,
        code="permission_denied",
    )


def test_another_users_payout_is_a_404(host, client_for, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        mine = (
            client_for(host)
            .post("/api/payouts/initiate", {"amount_cents": 1000, "currency": "USD"}, format="json")
            .json()
        )
    stranger = client_for(ArtistFactory())
    for url, params in (
        (f"/api/payouts/{mine['id']}", {}),
        ("/api/payouts/status", {"id": mine["id"]}),
        ("/api/payouts/999999999", {}),
        ("/api/payouts/status", {"id": 9223372036854775807}),
    ):
        response = stranger.get(url, params)
        assert response.status_code == 404, (url, response.content)
        assert response.json()["error"]["code"] == "not_found"
    assert stranger.get("/api/payouts/status").json()["results"] == []
    assert client_for(host).get(f"/api/payouts/{mine['id']}").status_code == 200


def test_bad_status_filters_are_400s(host, client_for):
    client = client_for(host)
    for params in (
        {"status": "done"},
        {"id": "x"},
        {"id": 0},
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"currency": "ZZZ"},
    ):
        response = client.get("/api/payouts/status", params)
        assert response.status_code == 400, (params, response.content)
        assert response.json()["error"]["code"] == "invalid"
    assert client.get("/api/payouts/available", {"currency": "nope"}).status_code == 400


def test_unauthenticated_requests_are_refused(api_client):
    assert api_client.get("/api/payouts/status").status_code == 401
    response = api_client.post("/api/payouts/initiate", {}, format="json")
    assert response.status_code == 401
    assert "error" in response.json()
