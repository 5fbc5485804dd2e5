"""Fixtures: the Stripe stand-in with the app pointed at it, recipients with a completed
connected account, earnings booked through a real (stand-in) charge, and Stripe events
handed to the webhook intake's processor."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import stripe
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connections
from django.test import Client, override_settings

from ledger.chart import platform_code, user_code
from ledger.models import LedgerTransaction
from ledger.selectors import account_balance
from ledger.services import credit, debit, post_transaction
from payouts.models import Payout
from treasury.models import AuditLog, User
from treasury.rls import system_context
from treasury.stripe.client import stripe_client
from treasury.stripe.models import StripeAccount
from treasury.stripe.services import (
    ensure_charge_posted,
    process_event,
    start_onboarding,
    sync_connected_account,
)
from treasury.stripe_standin import RunningStandin, signature_header, start_standin

WEBHOOK_SECRET = "whsec_payouts_tests"
REFUSING_MAIL_BACKEND = "tests.payouts.conftest.RefusingMailBackend"


class RefusingMailBackend(BaseEmailBackend):
    """A mail server that is not there (what Django's SMTP default meets on most hosts)."""

    def send_messages(self, email_messages: Any) -> int:
        raise ConnectionRefusedError("[Errno 111] Connection refused (no mail server)")


# `owner` is named so that pytest-django creates the owner's test database, which `default`
# mirrors: with `default` alone, pytest-django sets up no test database at all (a mirror is
# never created) and `default` stays pointed at the development database.
DB = pytest.mark.django_db(databases=["default", "owner"])


@pytest.fixture
def test_database_only() -> None:
    """For tests that commit: refuse to run anywhere but a test database."""
    name = connections["default"].settings_dict["NAME"]
    assert name.startswith("test_"), f"refusing to commit to {name!r}: not a test database"


@pytest.fixture
def stripe_standin() -> Iterator[RunningStandin]:
    running = start_standin(port=0)
    yield running
    running.stop()


@pytest.fixture
def payout_settings(settings: Any) -> Any:
    """Earnings available at once (the delay has its own tests), the default fees."""
    settings.PAYOUTS_AVAILABILITY_DELAY = timedelta(0)
    settings.PAYOUTS_RISK_HOLD_THRESHOLD_BPS = 7000
    settings.PAYOUTS_INSTANT_FEE_BPS = 150
    settings.PAYOUTS_INSTANT_FEE_MINIMUM_CENTS = {"USD": 50}
    settings.PAYOUTS_INSTANT_FEE_BEARER = "recipient"
    settings.PAYOUTS_MINIMUM_CENTS = {"USD": 1000, "JPY": 1000}
    return settings


@pytest.fixture
def stripe_settings(
    stripe_standin: RunningStandin, payout_settings: Any
) -> Iterator[RunningStandin]:
    with override_settings(
        STRIPE_API_BASE=stripe_standin.base_url,
        STRIPE_MAX_NETWORK_RETRIES=0,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
    ):
        yield stripe_standin


@pytest.fixture
def stripe_api(stripe_settings: RunningStandin) -> stripe.StripeClient:
    return stripe_client()


def control(standin: RunningStandin, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 - a local URL
        standin.base_url + path,
        json.dumps(body or {}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def onboard(standin: RunningStandin, user: User) -> StripeAccount:
    """A connected account with onboarding completed, as Stripe would report it."""
    with system_context():
        link = start_onboarding(user=user)
    control(standin, f"/_standin/accounts/{link.account.stripe_account_id}/complete_onboarding")
    account = sync_connected_account(stripe_account_id=link.account.stripe_account_id)
    assert account is not None and account.onboarding_status == "completed"
    return account


def earn(standin: RunningStandin, user: User, amount_cents: int, currency: str = "usd") -> str:
    """A buyer pays `user` through the stand-in and the charge is booked: with the default
    terms (10% platform fee, the platform bears Stripe's fee) `user`'s payable grows by 90%
    of `amount_cents`, and the stand-in's platform balance by the amount less Stripe's fee."""
    body = {"amount": amount_cents, "currency": currency, "metadata": {"host_id": str(user.pk)}}
    intent = control(standin, "/_standin/charges", body)
    charge_id = intent["latest_charge"]["id"]
    ensure_charge_posted(charge_id=charge_id)
    return charge_id


def book_earning(user: User, amount_cents: int, currency: str = "USD", key: str = "") -> None:
    """Ledger only (no Stripe money behind it): a charge's credit to `user`'s payable."""
    import uuid

    post_transaction(
        idempotency_key=key or f"charge:ch_test_{uuid.uuid4().hex}",
        entries=[
            debit(platform_code("stripe_balance", currency), amount_cents, currency),
            credit(user_code(user.pk, "payable", currency), amount_cents, currency),
        ],
        event_source="stripe_charge",
    )


def payable(user: User, currency: str = "USD") -> int:
    with system_context():
        return account_balance(code=user_code(user.pk, "payable", currency))


def platform(name: str, currency: str = "USD") -> int:
    with system_context():
        return account_balance(code=platform_code(name, currency))


def reload(payout: Payout | int) -> Payout:
    with system_context():
        return Payout.objects.get(pk=getattr(payout, "pk", payout))


def counts() -> tuple[int, int, int]:
    """Payouts, ledger transactions and audit rows: what a refused request must not add."""
    with system_context():
        return (
            Payout.objects.count(),
            LedgerTransaction.objects.count(),
            AuditLog.objects.filter(action__startswith="payout.").count(),
        )


def ledger_keys(payout: Payout) -> list[str]:
    with system_context():
        return sorted(
            LedgerTransaction.objects.filter(
                idempotency_key__startswith=f"payout:{payout.pk}:"
            ).values_list("idempotency_key", flat=True)
        )


def stripe_events(
    api: stripe.StripeClient, event_type: str, object_id: str, account: str | None = None
) -> list[dict[str, Any]]:
    """The stand-in's events of `event_type` about `object_id`, newest first (on the
    connected `account`, for a connected account's own objects such as its payouts)."""
    options: Any = {"stripe_account": account} if account else {}
    listed = api.v1.events.list(params={"limit": 100, "type": event_type}, options=options)
    found = [event.to_dict() for event in listed.data]
    return [event for event in found if event["data"]["object"].get("id") == object_id]


def stripe_event(
    api: stripe.StripeClient, event_type: str, object_id: str, account: str | None = None
) -> dict[str, Any]:
    """The stand-in's latest event of `event_type` about `object_id`."""
    found = stripe_events(api, event_type, object_id, account)
    if not found:
        raise AssertionError(f"no {event_type} event about {object_id}")
    return found[0]


def deliver(
    api: stripe.StripeClient, event_type: str, object_id: str, account: str | None = None
) -> Any:
    """Hand the event to the webhook intake's exactly-once processor, as a delivery would."""
    processing = process_event(event=stripe_event(api, event_type, object_id, account))
    assert processing.status == "processed", processing.last_error
    return processing


def post_webhook(
    api: stripe.StripeClient, event_type: str, object_id: str, account: str | None = None
) -> Any:
    """The event through /api/stripe/webhook, signed as Stripe signs it (an error inside is
    answered as the server would answer it, not raised into the test)."""
    payload = json.dumps(stripe_event(api, event_type, object_id, account))
    signature = signature_header(payload, WEBHOOK_SECRET, int(time.time()))
    return Client(raise_request_exception=False).post(
        "/api/stripe/webhook",
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": signature},
    )


def transfers_to(api: stripe.StripeClient, account_id: str) -> list[dict[str, Any]]:
    listed = api.v1.transfers.list(params={"destination": account_id, "limit": 100})
    return [t.to_dict() for t in listed.data]
