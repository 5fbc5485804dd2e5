"""A buyer's payment becomes one ledger posting, split to the cent, whatever the events.

Worked example (the stand-in charges Stripe's 2.9% + 30): a 100.00 USD charge pays Stripe
3.20. The rule keeps 10% for the platform (10.00) and splits the 90.00 left 70/30 between the
host (63.00) and the artist (27.00). Stripe's balance grows by 96.80.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

from disputes.models import Dispute, Refund
from ledger.chart import platform_code, user_code
from ledger.models import LedgerTransaction
from ledger.selectors import account_balance
from tests.factories import DEFAULT_PASSWORD, AdminFactory, ArtistFactory, HostFactory, UserFactory
from treasury.models import AuditLog
from treasury.rls import system_context
from treasury.stripe.models import EventStatus, StripeCharge, StripeEventProcessing
from treasury.stripe.services import retry_failed_events

from .conftest import control, deliver, events_of, pay, split_rule

pytestmark = pytest.mark.django_db

PLATFORM_CODES = {
    "stripe": platform_code("stripe_balance", "USD"),
    "revenue": platform_code("fee_revenue", "USD"),
    "processing": platform_code("processing_fees", "USD"),
}


def platform_balances() -> dict[str, int]:
    with system_context():
        return {name: account_balance(code=code) for name, code in PLATFORM_CODES.items()}


def payable(user: Any, currency: str = "USD") -> int:
    with system_context():
        return account_balance(code=user_code(user.pk, "payable", currency))


def processing_of(event: dict[str, Any]) -> StripeEventProcessing:
    with system_context():
        return StripeEventProcessing.objects.get(stripe_event_id=event["id"])


def charge_postings(charge_id: str) -> int:
    with system_context():
        return LedgerTransaction.objects.filter(idempotency_key=f"charge:{charge_id}").count()


@pytest.fixture
def sellers() -> tuple[Any, Any]:
    return HostFactory(), ArtistFactory()


def test_a_charge_is_split_into_payables_fee_revenue_and_processing_fees(
    stripe_settings, stripe_api, sellers
):
    host, artist = sellers
    rule = split_rule(owner=host, recipients=[(host, 7000), (artist, 3000)])
    buyer = UserFactory()
    before = platform_balances()
    intent = pay(stripe_settings, amount_cents=10000, split_rule_id=rule.pk, buyer_id=str(buyer.pk))
    charge_id = intent["latest_charge"]["id"]
    event = events_of(stripe_api, charge_id)["charge.succeeded"]

    response = deliver(Client(), event)

    assert response.status_code == 200 and response.json()["status"] == "processed"
    after = platform_balances()
    assert {name: after[name] - before[name] for name in after} == {
        "stripe": 10000 - 320,
        "revenue": 1000,
        "processing": 320,
    }
    assert (payable(host), payable(artist)) == (6300, 2700)
    with system_context():
        record = StripeCharge.objects.get(stripe_charge_id=charge_id)
        posting = record.ledger_transaction
    assert (record.host_id, record.buyer_id, record.split_rule_id) == (host.pk, buyer.pk, rule.pk)
    assert record.split_rule_version == 1
    assert (record.amount_cents, record.currency, record.stripe_fee_cents) == (10000, "USD", 320)
    assert record.allocation["recipients"] == [
        {"recipient_id": str(host.pk), "amount_cents": 6300, "stripe_fee_cents": 0},
        {"recipient_id": str(artist.pk), "amount_cents": 2700, "stripe_fee_cents": 0},
    ]
    assert (posting.idempotency_key, posting.event_source, posting.reference_id) == (
        f"charge:{charge_id}",
        "stripe_charge",
        charge_id,
    )
    assert posting.metadata["split_rule_id"] == rule.pk
    assert posting.metadata["payment_intent"] == intent["id"]
    assert processing_of(event).note.startswith(f"charge {charge_id} posted")


def test_recipients_bear_stripes_fee_pro_rata_when_the_rule_says_so(
    stripe_settings, stripe_api, sellers
):
    """9.99 USD: Stripe keeps 0.59; platform 10% floored = 0.99; 9.00 split 6.30 / 2.70.
    The 59-cent fee split 70/30 is 41.3 / 17.7: floors 41 / 17, the spare cent to the larger
    remainder (the artist's .7): 41 / 18."""
    host, artist = sellers
    rule = split_rule(
        owner=host, recipients=[(host, 7000), (artist, 3000)], stripe_fee_bearer="recipients"
    )
    before = platform_balances()
    intent = pay(stripe_settings, amount_cents=999, split_rule_id=rule.pk)
    event = events_of(stripe_api, intent["latest_charge"]["id"])["charge.succeeded"]

    assert deliver(Client(), event).json()["status"] == "processed"

    after = platform_balances()
    assert {name: after[name] - before[name] for name in after} == {
        "stripe": 999 - 59,
        "revenue": 99,
        "processing": 0,
    }
    assert (payable(host), payable(artist)) == (630 - 41, 270 - 18)


def test_a_charge_naming_only_the_host_is_split_by_the_hosts_default_rule(
    stripe_settings, stripe_api, sellers
):
    host, artist = sellers
    split_rule(owner=host, recipients=[(host, 5000), (artist, 5000)], is_default=True)
    intent = pay(stripe_settings, amount_cents=2000, host_id=str(host.pk))
    event = events_of(stripe_api, intent["latest_charge"]["id"])["charge.succeeded"]
    assert deliver(Client(), event).json()["status"] == "processed"
    assert (payable(host), payable(artist)) == (900, 900)


def test_a_host_without_a_rule_gets_the_platform_default_terms(
    stripe_settings, stripe_api, settings
):
    host = HostFactory()
    intent = pay(stripe_settings, amount_cents=2000, host_id=str(host.pk))
    event = events_of(stripe_api, intent["latest_charge"]["id"])["charge.succeeded"]
    assert deliver(Client(), event).json()["status"] == "processed"
    fee_cents = 2000 * settings.SPLITS_DEFAULT_PLATFORM_FEE_BPS // 10000
    assert payable(host) == 2000 - fee_cents
    with system_context():
        record = StripeCharge.objects.get(stripe_charge_id=intent["latest_charge"]["id"])
    assert (record.split_rule_id, record.split_rule_version) == (None, None)


def test_every_event_about_a_charge_posts_it_once_whatever_the_order(
    stripe_settings, stripe_api, sellers
):
    """Refund first, then the payment intent, then the charge, each twice: one posting."""
    host, artist = sellers
    rule = split_rule(owner=host, recipients=[(host, 7000), (artist, 3000)])
    intent = pay(stripe_settings, amount_cents=5000, split_rule_id=rule.pk)
    charge_id = intent["latest_charge"]["id"]
    stripe_api.v1.refunds.create(params={"charge": charge_id, "amount": 1000})
    events = events_of(stripe_api, charge_id)
    order = ["charge.refunded", "refund.created", "payment_intent.succeeded", "charge.succeeded"]
    client = Client()

    answers = [deliver(client, events[kind]).json() for kind in order for _ in range(2)]

    assert [(a["status"], a["duplicate"]) for a in answers] == [
        ("processed", False),
        ("processed", True),
    ] * 4
    assert charge_postings(charge_id) == 1
    notes = {kind: processing_of(events[kind]).note for kind in order}
    with system_context():
        refund_id = Refund.objects.get(charge__stripe_charge_id=charge_id).stripe_refund_id
    assert notes["charge.refunded"] == f"charge {charge_id} refunds: {refund_id} succeeded"
    assert "already posted" in notes["charge.succeeded"]
    assert notes["refund.created"].startswith(f"refund {refund_id} (")
    # 10.00 of 50.00 refunded unwinds a fifth of each share: 3150 -> 2520, 1350 -> 1080.
    assert (payable(host), payable(artist)) == (2520, 1080)


def test_a_dispute_arriving_first_books_the_charge(stripe_settings, stripe_api, sellers):
    host, artist = sellers
    rule = split_rule(owner=host, recipients=[(host, 7000), (artist, 3000)])
    charge_id = pay(stripe_settings, amount_cents=3000, split_rule_id=rule.pk)["latest_charge"][
        "id"
    ]
    control(stripe_settings, f"/_standin/charges/{charge_id}/dispute", {})
    events = events_of(stripe_api, charge_id)
    client = Client()
    assert deliver(client, events["charge.dispute.created"]).json()["status"] == "processed"
    assert deliver(client, events["charge.succeeded"]).json()["status"] == "processed"
    assert charge_postings(charge_id) == 1
    with system_context():
        dispute = Dispute.objects.get(charge__stripe_charge_id=charge_id)
    assert dispute.status == "needs_response"
    assert processing_of(events["charge.dispute.created"]).note == (
        f"dispute {dispute.stripe_dispute_id} needs_response"
    )


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ({}, "names neither split_rule_id nor host_id"),
        ({"split_rule_id": "abc"}, "is not an id"),
        ({"split_rule_id": "999999999"}, "split rule 999999999 not found"),
        ({"host_id": "not-a-uuid"}, "is not a user id"),
    ],
)
def test_a_charge_whose_metadata_names_no_seller_fails_clearly_and_posts_nothing(
    stripe_settings, stripe_api, metadata, error
):
    intent = pay(stripe_settings, amount_cents=1500, **metadata)
    charge_id = intent["latest_charge"]["id"]
    event = events_of(stripe_api, charge_id)["charge.succeeded"]

    response = deliver(Client(), event)

    assert response.status_code == 200 and response.json()["status"] == "failed"
    processing = processing_of(event)
    assert processing.status == EventStatus.FAILED and processing.attempts == 1
    assert error in processing.last_error
    assert charge_postings(charge_id) == 0


def test_a_rule_of_another_host_than_the_metadatas_fails(stripe_settings, stripe_api, sellers):
    host, artist = sellers
    rule = split_rule(owner=host, recipients=[(host, 10000)])
    intent = pay(stripe_settings, amount_cents=1500, split_rule_id=rule.pk, host_id=str(artist.pk))
    event = events_of(stripe_api, intent["latest_charge"]["id"])["charge.succeeded"]
    assert deliver(Client(), event).json()["status"] == "failed"
    assert "belongs to" in processing_of(event).last_error


def test_a_charge_in_an_unknown_currency_fails_and_posts_nothing(
    stripe_settings, stripe_api, sellers
):
    host, _ = sellers
    intent = pay(stripe_settings, amount_cents=1500, currency="xyz", host_id=str(host.pk))
    charge_id = intent["latest_charge"]["id"]
    event = events_of(stripe_api, charge_id)["charge.succeeded"]
    assert deliver(Client(), event).json()["status"] == "failed"
    assert "unknown currency 'xyz'" in processing_of(event).last_error
    assert charge_postings(charge_id) == 0


def test_a_zero_decimal_currency_is_split_in_whole_yen(stripe_settings, stripe_api, sellers):
    """10,000 JPY: Stripe keeps 3.6% = 360; platform 10% = 1,000; 9,000 split 70/30."""
    host, artist = sellers
    rule = split_rule(owner=host, recipients=[(host, 7000), (artist, 3000)])
    intent = pay(stripe_settings, amount_cents=10000, currency="jpy", split_rule_id=rule.pk)
    event = events_of(stripe_api, intent["latest_charge"]["id"])["charge.succeeded"]
    assert deliver(Client(), event).json()["status"] == "processed"
    assert (payable(host, "JPY"), payable(artist, "JPY")) == (6300, 2700)
    with system_context():
        assert account_balance(code=platform_code("processing_fees", "JPY")) == 360


def test_a_failed_event_is_retried_by_the_job_once_stripe_answers_again(
    stripe_settings, stripe_api, sellers
):
    host, _ = sellers
    intent = pay(stripe_settings, amount_cents=1200, host_id=str(host.pk))
    charge_id = intent["latest_charge"]["id"]
    events = events_of(stripe_api, charge_id)
    client = Client()
    # The first delivery installs the endpoint while Stripe is reachable.
    assert deliver(client, events["payment_intent.succeeded"]).json()["status"] == "processed"
    assert charge_postings(charge_id) == 1
    unreachable = "http://127.0.0.1:9"  # the discard port: nothing listens there
    other = pay(stripe_settings, amount_cents=1300, host_id=str(host.pk))
    other_charge = other["latest_charge"]["id"]
    event = events_of(stripe_api, other_charge)["charge.succeeded"]
    with override_settings(STRIPE_API_BASE=unreachable):
        assert deliver(client, event).json()["status"] == "failed"
    assert "APIConnectionError" in processing_of(event).last_error
    assert charge_postings(other_charge) == 0

    assert retry_failed_events() >= 1

    processing = processing_of(event)
    assert (processing.status, processing.attempts, processing.last_error) == ("processed", 2, "")
    assert charge_postings(other_charge) == 1
    with system_context():
        retry = AuditLog.objects.filter(action="stripe.event.retry", target_id=str(processing.pk))
        assert retry.get().user is None  # the job acts as the system


def test_an_admin_retries_a_failed_event_from_the_admin_and_it_is_audited(
    stripe_settings, stripe_api, sellers
):
    host, _ = sellers
    intent = pay(stripe_settings, amount_cents=1700, currency="xyz", host_id=str(host.pk))
    event = events_of(stripe_api, intent["latest_charge"]["id"])["charge.succeeded"]
    assert deliver(Client(), event).json()["status"] == "failed"
    processing = processing_of(event)
    admin = AdminFactory()
    client = Client()
    assert client.login(email=admin.email, password=DEFAULT_PASSWORD)

    response = client.post(
        "/admin/treasury/stripeeventprocessing/",
        {"action": "retry", "_selected_action": [processing.pk]},
    )

    assert response.status_code == 302
    processing.refresh_from_db()
    assert (processing.status, processing.attempts) == ("failed", 2)  # still no such currency
    with system_context():
        audit = AuditLog.objects.get(action="stripe.event.retry", target_id=str(processing.pk))
    assert audit.user == admin
    assert (audit.before["attempts"], audit.after["attempts"]) == (1, 2)
