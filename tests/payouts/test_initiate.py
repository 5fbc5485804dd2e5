"""Initiating a payout: the reservation, the Stripe transfer, settlement, exactly once.

Worked example: a host earns 90.00 USD (a 100.00 charge: 10.00 platform fee; the platform
bears Stripe's 3.20). A standard payout of 60.00 reserves 60.00 (payable 90.00 -> 30.00,
payout_clearing +60.00), Stripe transfers 60.00 to the host's connected account, and the
settlement moves clearing's 60.00 to the Stripe balance (-60.00).
"""

from __future__ import annotations

import pytest

from ledger.models import LedgerTransaction
from ledger.selectors import ledger_differences
from payouts.models import Payout
from tests.factories import HostFactory
from treasury.models import AuditLog
from treasury.rls import system_context

from .conftest import (
    DB,
    earn,
    ledger_keys,
    onboard,
    payable,
    platform,
    reload,
    transfers_to,
)

pytestmark = DB


@pytest.fixture
def earning_host(stripe_settings):
    """A host with a completed connected account and 90.00 USD payable."""
    host = HostFactory()
    account = onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000)
    assert payable(host) == 9000
    host.account = account
    return host


def initiate(client, body, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/api/payouts/initiate", body, format="json", headers=headers)


def test_a_standard_payout_reserves_transfers_and_settles(
    earning_host, client_for, stripe_api, django_capture_on_commit_callbacks
):
    host = earning_host
    clearing, stripe_balance = platform("payout_clearing"), platform("stripe_balance")

    with django_capture_on_commit_callbacks(execute=True):
        response = initiate(client_for(host), {"amount_cents": 6000, "currency": "usd"}, "k1")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["amount_cents"], body["fee_cents"], body["net_cents"]) == (
        "pending",  # the answer is written before the transfer runs, after commit
        6000,
        0,
        6000,
    )
    payout = reload(body["id"])
    assert payout.status == "paid" and payout.completed_at is not None
    assert payable(host) == 3000
    assert platform("payout_clearing") - clearing == 0
    assert platform("stripe_balance") - stripe_balance == -6000
    assert ledger_keys(payout) == [f"payout:{payout.pk}:reserve", f"payout:{payout.pk}:settle"]
    [transfer] = transfers_to(stripe_api, host.account.stripe_account_id)
    assert (transfer["id"], transfer["amount"], transfer["currency"]) == (
        payout.stripe_transfer_id,
        6000,
        "usd",
    )
    assert transfer["transfer_group"] == f"payout_{payout.pk}"
    assert transfer["metadata"]["payout_id"] == str(payout.pk)
    with system_context():
        reservation = payout.ledger_transaction
        assert reservation.idempotency_key == f"payout:{payout.pk}:reserve"
        assert payout.ledger_entry.amount_cents == 6000 and payout.ledger_entry.user_id == host.pk
        actions = list(
            AuditLog.objects.filter(target_id=str(payout.pk), target_type="payouts.payout")
            .order_by("id")
            .values_list("action", flat=True)
        )
        assert actions == ["payout.initiate", "payout.paid"]
        assert list(ledger_differences()) == []

    shown = client_for(host).get(f"/api/payouts/{payout.pk}").json()
    assert (shown["status"], shown["stripe_transfer_id"]) == ("paid", transfer["id"])


def test_all_available_pays_out_everything_available(
    earning_host, client_for, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = initiate(client_for(earning_host), {"amount_cents": "all", "currency": "USD"})
    assert response.status_code == 201, response.content
    assert response.json()["amount_cents"] == 9000
    assert reload(response.json()["id"]).status == "paid"
    assert payable(earning_host) == 0


def test_an_instant_payout_charges_its_fee_and_settles_when_paid(
    earning_host, client_for, stripe_api, stripe_settings, django_capture_on_commit_callbacks
):
    """60.00 instant at 1.5%: the fee is 0.90, 59.10 is transferred and paid out at once;
    when Stripe reports the payout paid, clearing's 60.00 becomes Stripe balance -59.10 and
    fee revenue +0.90."""
    from .conftest import control, deliver, post_webhook

    host = earning_host
    revenue, stripe_balance = platform("fee_revenue"), platform("stripe_balance")
    with django_capture_on_commit_callbacks(execute=True):
        body = initiate(
            client_for(host), {"amount_cents": 6000, "currency": "USD", "method": "instant"}
        ).json()
    assert (body["amount_cents"], body["fee_cents"], body["net_cents"]) == (6000, 90, 5910)
    payout = reload(body["id"])
    assert payout.status == "in_flight" and payout.stripe_payout_id
    assert payable(host) == 3000
    remote = stripe_api.v1.payouts.retrieve(
        payout.stripe_payout_id, options={"stripe_account": host.account.stripe_account_id}
    )
    assert (remote.amount, remote.method, remote.currency) == (5910, "instant", "usd")
    assert transfers_to(stripe_api, host.account.stripe_account_id)[0]["amount"] == 5910

    control(stripe_settings, f"/_standin/payouts/{payout.stripe_payout_id}/paid")
    account_id = host.account.stripe_account_id
    response = post_webhook(stripe_api, "payout.paid", payout.stripe_payout_id, account_id)
    assert response.status_code == 200 and response.json()["status"] == "processed", response.json()
    deliver(stripe_api, "payout.paid", payout.stripe_payout_id, account_id)  # a duplicate

    payout = reload(payout)
    assert payout.status == "paid"
    assert platform("fee_revenue") - revenue == 90
    assert platform("stripe_balance") - stripe_balance == -5910
    assert payable(host) == 3000
    assert ledger_keys(payout) == [f"payout:{payout.pk}:reserve", f"payout:{payout.pk}:settle"]
    with system_context():
        assert list(ledger_differences()) == []


@pytest.mark.parametrize(
    ("amount_cents", "bps", "minimum", "bearer", "fee_cents"),
    [
        (6000, 150, 50, "recipient", 90),  # 1.5% of 60.00
        (1000, 150, 50, "recipient", 50),  # 0.15 is below the 0.50 minimum
        (6001, 150, 0, "recipient", 91),  # 90.015 rounds up to 91
        (6000, 150, 50, "platform", 0),  # the platform bears it: nothing charged
    ],
)
def test_the_instant_fee_is_borne_as_configured(
    payout_settings, amount_cents, bps, minimum, bearer, fee_cents
):
    from payouts.services import instant_fee_cents

    payout_settings.PAYOUTS_INSTANT_FEE_BPS = bps
    payout_settings.PAYOUTS_INSTANT_FEE_MINIMUM_CENTS = {"USD": minimum}
    payout_settings.PAYOUTS_INSTANT_FEE_BEARER = bearer
    assert instant_fee_cents(amount_cents=amount_cents, currency="USD") == fee_cents


def test_a_jpy_payout_moves_whole_yen(
    stripe_settings, stripe_api, client_for, django_capture_on_commit_callbacks
):
    """A 10,000 yen charge: the host gets 9,000 yen; a payout of all of it transfers 9,000."""
    host = HostFactory()
    account = onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000, "jpy")
    assert payable(host, "JPY") == 9000
    with django_capture_on_commit_callbacks(execute=True):
        body = initiate(client_for(host), {"amount_cents": "all", "currency": "JPY"}).json()
    payout = reload(body["id"])
    assert (payout.status, payout.amount_cents, payout.currency) == ("paid", 9000, "JPY")
    [transfer] = transfers_to(stripe_api, account.stripe_account_id)
    assert (transfer["amount"], transfer["currency"]) == (9000, "jpy")
    assert payable(host, "JPY") == 0 and platform("payout_clearing", "JPY") == 0


def test_the_same_idempotency_key_returns_the_same_payout(
    earning_host, client_for, django_capture_on_commit_callbacks
):
    client = client_for(earning_host)
    with django_capture_on_commit_callbacks(execute=True):
        first = initiate(client, {"amount_cents": 2000, "currency": "USD"}, "same")
    with django_capture_on_commit_callbacks(execute=True):
        again = initiate(client, {"amount_cents": 2000, "currency": "USD"}, "same")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert payable(earning_host) == 7000
    with system_context():
        assert Payout.objects.filter(user=earning_host).count() == 1
        assert LedgerTransaction.objects.filter(
            idempotency_key=f"payout:{first.json()['id']}:reserve"
        ).exists()


def test_payout_status_lists_ones_own_with_filters(
    earning_host, client_for, django_capture_on_commit_callbacks
):
    client = client_for(earning_host)
    with django_capture_on_commit_callbacks(execute=True):
        standard = initiate(client, {"amount_cents": 1000, "currency": "USD"}).json()
        instant = initiate(
            client, {"amount_cents": 2000, "currency": "USD", "method": "instant"}
        ).json()
    listed = client.get("/api/payouts/status").json()
    assert [p["id"] for p in listed["results"]] == [instant["id"], standard["id"]]
    assert listed["count"] == 2
    only_paid = client.get("/api/payouts/status", {"status": "paid"}).json()["results"]
    assert [p["id"] for p in only_paid] == [standard["id"]]
    only_instant = client.get("/api/payouts/status", {"method": "instant"}).json()["results"]
    assert [p["id"] for p in only_instant] == [instant["id"]]
    one = client.get("/api/payouts/status", {"id": standard["id"]}).json()
    assert (one["id"], one["status"]) == (standard["id"], "paid")
    available = client.get("/api/payouts/available").json()["results"]
    assert available == [
        {
            "currency": "USD",
            "available_cents": 6000,
            "payable_cents": 6000,
            "maturing_cents": 0,
            "in_flight_cents": 2000,
            "debt_cents": 0,
        }
    ]
