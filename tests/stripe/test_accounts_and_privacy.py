"""Connected accounts through the API, and who may see accounts and charges: PostgreSQL
itself hides another host's rows, and the API answers 404 for them."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError, transaction
from django.test import Client, override_settings

from tests.factories import ArtistFactory, HostFactory, UserFactory
from treasury.rls import ContextRole, rls_context, system_context
from treasury.stripe.models import OnboardingStatus, StripeAccount
from treasury.stripe.services import onboarding_status_of, sync_connected_account

from .conftest import control, deliver, events_of, pay

pytestmark = pytest.mark.django_db


def test_a_buyer_cannot_onboard(stripe_settings, client_for, buyer):
    response = client_for(buyer).post("/api/stripe/accounts/onboard")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    with system_context():
        assert not StripeAccount.objects.filter(user_id=buyer.pk).exists()


def test_no_account_yet_is_a_404(stripe_settings, client_for, host):
    response = client_for(host).get("/api/stripe/accounts/me")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_onboarding_creates_one_express_account_and_links_to_stripe(
    stripe_settings, stripe_api, client_for, artist
):
    api = client_for(artist)
    first = api.post("/api/stripe/accounts/onboard")
    again = api.post("/api/stripe/accounts/onboard/")

    assert (first.status_code, again.status_code) == (201, 200)
    body = first.json()
    account_id = body["stripe_account_id"]
    assert again.json()["stripe_account_id"] == account_id
    assert body["onboarding_status"] == "pending"
    assert body["url"].startswith(f"{stripe_settings.base_url}/_standin/onboard/{account_id}")
    remote = stripe_api.v1.accounts.retrieve(account_id)
    assert (remote.type, remote.email, remote.metadata["user_id"]) == (
        "express",
        artist.email,
        str(artist.pk),
    )
    me = api.get("/api/stripe/accounts/me").json()
    assert (me["user_id"], me["stripe_account_id"], me["charges_enabled"]) == (
        str(artist.pk),
        account_id,
        False,
    )


def test_stripe_out_of_reach_is_a_502_and_nothing_is_recorded(stripe_settings, client_for, host):
    with override_settings(STRIPE_API_BASE="http://127.0.0.1:9"):  # nothing listens there
        response = client_for(host).post("/api/stripe/accounts/onboard")
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "stripe_error"
    assert error["message"].startswith("creating the connected account: Stripe said")
    with system_context():
        assert not StripeAccount.objects.filter(user_id=host.pk).exists()


def test_account_updated_completes_and_rejects_onboarding_and_audits_it(
    stripe_settings, stripe_api, client_for, host
):
    from treasury.models import AuditLog

    account_id = client_for(host).post("/api/stripe/accounts/onboard").json()["stripe_account_id"]
    control(stripe_settings, f"/_standin/accounts/{account_id}/complete_onboarding", {})
    updated = _connect_events(stripe_api, account_id)
    response = deliver(Client(), updated["account.updated"])
    assert response.status_code == 200 and response.json()["status"] == "processed"
    with system_context():
        account = StripeAccount.objects.get(user_id=host.pk)
        audit = AuditLog.objects.get(action="stripe.account.completed", target_id=str(host.pk))
    assert account.onboarding_status == OnboardingStatus.COMPLETED
    assert (account.charges_enabled, account.payouts_enabled, account.details_submitted) == (
        True,
        True,
        True,
    )
    assert (audit.before["onboarding_status"], audit.after["onboarding_status"]) == (
        "pending",
        "completed",
    )

    control(
        stripe_settings, f"/_standin/accounts/{account_id}/reject", {"reason": "rejected.fraud"}
    )
    with system_context():
        assert sync_connected_account(stripe_account_id=account_id).onboarding_status == "rejected"
        assert AuditLog.objects.filter(action="stripe.account.rejected").count() == 1


def test_an_update_that_overtakes_the_onboarding_commit_still_finds_its_host(
    stripe_settings, stripe_api
):
    """Stripe's first account.updated may arrive before our onboarding request committed:
    the account's metadata (user_id, set by our onboarding) says whose it is."""
    from treasury.models import AuditLog

    host = HostFactory()
    remote = stripe_api.v1.accounts.create(
        params={"type": "express", "metadata": {"user_id": str(host.pk)}}
    )
    control(stripe_settings, f"/_standin/accounts/{remote.id}/complete_onboarding", {})
    event = _connect_events(stripe_api, remote.id)["account.updated"]

    assert deliver(Client(), event).json()["status"] == "processed"

    with system_context():
        account = StripeAccount.objects.get(user_id=host.pk)
        actions = set(
            AuditLog.objects.filter(target_id=str(host.pk)).values_list("action", flat=True)
        )
    assert (account.stripe_account_id, account.onboarding_status) == (remote.id, "completed")
    assert actions == {"stripe.account.create", "stripe.account.completed"}


def test_an_update_of_an_account_that_is_not_ours_changes_nothing(stripe_settings, stripe_api):
    remote = stripe_api.v1.accounts.create(params={"type": "express"})
    control(stripe_settings, f"/_standin/accounts/{remote.id}/complete_onboarding", {})
    event = _connect_events(stripe_api, remote.id)["account.updated"]
    response = deliver(Client(), event)
    assert response.json()["status"] == "processed"
    with system_context():
        assert not StripeAccount.objects.filter(stripe_account_id=remote.id).exists()


def _connect_events(api: Any, account_id: str) -> dict[str, Any]:
    """Connect events belong to the connected account: list them as that account."""
    listed = api.v1.events.list(params={"limit": 10}, options={"stripe_account": account_id})
    return {e.type: e.to_dict() for e in reversed(listed.data)}


@pytest.mark.parametrize(
    ("flags", "reason", "status"),
    [
        ((True, True, True), None, "completed"),
        ((True, False, True), None, "pending"),
        ((False, False, True), "requirements.past_due", "pending"),
        ((False, False, False), "rejected.terms_of_service", "rejected"),
    ],
)
def test_the_onboarding_status_follows_stripes_flags(flags, reason, status):
    charges, payouts, details = flags
    account = {
        "charges_enabled": charges,
        "payouts_enabled": payouts,
        "details_submitted": details,
        "requirements": {"disabled_reason": reason},
    }
    assert onboarding_status_of(account) == status


# --- privacy ---


def _book(standin: Any, api: Any, *, host: Any, buyer: Any) -> str:
    intent = pay(standin, amount_cents=2500, host_id=str(host.pk), buyer_id=str(buyer.pk))
    charge_id = intent["latest_charge"]["id"]
    assert deliver(Client(), events_of(api, charge_id)["charge.succeeded"]).status_code == 200
    return charge_id


@pytest.fixture
def two_hosts_books(stripe_settings, stripe_api) -> dict[str, Any]:
    host_a, host_b, buyer = HostFactory(), ArtistFactory(), UserFactory()
    with system_context():
        for user, account_id in (
            (host_a, "acct_aaaaaaaaaaaaaaaa"),
            (host_b, "acct_bbbbbbbbbbbbbbbb"),
        ):
            StripeAccount.objects.create(user=user, stripe_account_id=account_id)
    return {
        "a": host_a,
        "b": host_b,
        "buyer": buyer,
        "charge_a": _book(stripe_settings, stripe_api, host=host_a, buyer=buyer),
        "charge_b": _book(stripe_settings, stripe_api, host=host_b, buyer=buyer),
    }


def test_a_host_sees_only_its_own_connected_account_row(two_hosts_books, raw_sql):
    a, b = two_hosts_books["a"], two_hosts_books["b"]
    with rls_context(user_id=a.pk, role=ContextRole.USER):
        rows = raw_sql("SELECT id, stripe_account_id FROM stripe_accounts")
        assert rows == [(a.pk, "acct_aaaaaaaaaaaaaaaa")]
        assert raw_sql("SELECT count(*) FROM stripe_accounts WHERE id = %s", [b.pk]) == [(0,)]
    with rls_context(user_id=None, role=ContextRole.USER):
        assert raw_sql("SELECT count(*) FROM stripe_accounts") == [(0,)]


def test_a_host_sees_its_sales_a_buyer_its_purchases_and_nobody_writes(two_hosts_books, raw_sql):
    books = two_hosts_books
    with rls_context(user_id=books["a"].pk, role=ContextRole.USER):
        assert raw_sql("SELECT stripe_charge_id FROM stripe_charges") == [(books["charge_a"],)]
    with rls_context(user_id=books["buyer"].pk, role=ContextRole.USER):
        seen = {row[0] for row in raw_sql("SELECT stripe_charge_id FROM stripe_charges")}
        assert seen == {books["charge_a"], books["charge_b"]}
    with rls_context(user_id=books["a"].pk, role=ContextRole.USER):
        updated = raw_sql(
            "UPDATE stripe_charges SET amount_cents = 1 WHERE stripe_charge_id = %s RETURNING id",
            [books["charge_a"]],
        )
        assert updated == []  # the host may read its sale, not change it
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            raw_sql(
                "INSERT INTO stripe_charges (stripe_charge_id, payment_intent_id, host_id,"
                " amount_cents, currency, stripe_fee_cents, stripe_fee_bearer, allocation,"
                " ledger_transaction_id, charged_at, created_at)"
                " SELECT 'ch_forged', '', host_id, 1, 'USD', 0, 'platform', '{}',"
                " ledger_transaction_id, now(), now() FROM stripe_charges LIMIT 1"
            )


def test_another_hosts_charge_is_a_404_and_the_list_shows_ones_own(two_hosts_books, client_for):
    books = two_hosts_books
    api_a = client_for(books["a"])
    response = api_a.get(f"/api/stripe/charges/{books['charge_b']}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    mine = api_a.get(f"/api/stripe/charges/{books['charge_a']}")
    assert mine.status_code == 200 and mine.json()["host_id"] == str(books["a"].pk)
    listed = api_a.get("/api/stripe/charges").json()
    assert [c["stripe_charge_id"] for c in listed["results"]] == [books["charge_a"]]
    buyer_view = client_for(books["buyer"]).get(f"/api/stripe/charges/{books['charge_b']}")
    assert buyer_view.status_code == 200
    assert buyer_view.json()["amount_cents"] == 2500


def test_demo_charges_are_for_admins_only(stripe_settings, client_for, host, buyer):
    body = {"buyer_id": str(buyer.pk), "host_id": str(host.pk), "amount_cents": 1000}
    response = client_for(host).post(
        "/api/stripe/demo-charges", {**body, "currency": "usd"}, format="json"
    )
    assert response.status_code == 403


def test_an_admin_demo_charge_pays_through_stripe_with_pinned_metadata(
    stripe_settings, stripe_api, client_for, admin_user, host, buyer
):
    body = {"buyer_id": str(buyer.pk), "host_id": str(host.pk), "amount_cents": 1234}
    response = client_for(admin_user).post(
        "/api/stripe/demo-charges", {**body, "currency": "eur"}, format="json"
    )
    assert response.status_code == 201, response.json()
    result = response.json()
    charge = stripe_api.v1.charges.retrieve(result["charge_id"])
    assert (charge.amount, charge.currency, charge.status) == (1234, "eur", "succeeded")
    assert charge.metadata.to_dict() == {"host_id": str(host.pk), "buyer_id": str(buyer.pk)}

    bad = client_for(admin_user).post(
        "/api/stripe/demo-charges", {**body, "currency": "xyz"}, format="json"
    )
    assert bad.status_code == 400 and "unknown currency" in bad.json()["error"]["message"]
