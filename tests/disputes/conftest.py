"""Fixtures: the Stripe stand-in with the app pointed at it, sellers with split rules and
connected accounts, charges booked through the stand-in, and Stripe's events handed to the
webhook intake's exactly-once processor (in any order, any number of times)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import stripe
from django.test import override_settings

from disputes.models import Dispute, Refund
from ledger.chart import platform_code, user_code
from ledger.models import LedgerTransaction
from ledger.selectors import account_balance, ledger_differences
from splits.models import SplitRule
from splits.services import create_split_rule
from treasury.models import AuditLog, User
from treasury.rls import system_context
from treasury.stripe.client import stripe_client
from treasury.stripe.models import StripeAccount, StripeCharge, StripeEventProcessing
from treasury.stripe.services import (
    ensure_charge_posted,
    process_event,
    start_onboarding,
    sync_connected_account,
)
from treasury.stripe_standin import RunningStandin, start_standin

DB = pytest.mark.django_db
PLATFORM_ACCOUNTS = ("stripe_balance", "fee_revenue", "processing_fees", "dispute_losses")


@pytest.fixture
def stripe_standin() -> Iterator[RunningStandin]:
    running = start_standin(port=0)
    yield running
    running.stop()


@pytest.fixture
def stripe_settings(stripe_standin: RunningStandin, settings: Any) -> Iterator[RunningStandin]:
    """The app pointed at the stand-in; earnings available at once; the default policies."""
    settings.PAYOUTS_AVAILABILITY_DELAY = timedelta(0)
    settings.PAYOUTS_RISK_HOLD_THRESHOLD_BPS = 10_000
    settings.PAYOUTS_MINIMUM_CENTS = {}
    settings.REFUNDS_BUYER_WINDOW_DAYS = 14
    settings.REFUNDS_BUYER_POLICY = "partial"
    settings.REFUNDS_PLATFORM_REFUNDS_FEE = True
    settings.REFUNDS_PLATFORM_ABSORBS_STRIPE_FEE = False
    settings.REFUNDS_REVERSE_TRANSFERS = True
    settings.DISPUTES_FEE_BEARER = "platform"
    with override_settings(STRIPE_API_BASE=stripe_standin.base_url, STRIPE_MAX_NETWORK_RETRIES=0):
        yield stripe_standin


@pytest.fixture
def stripe_api(stripe_settings: RunningStandin) -> stripe.StripeClient:
    return stripe_client()


def control(standin: RunningStandin, path: str, body: dict[str, Any] | None = None) -> Any:
    """The stand-in's control API (JSON in and out)."""
    request = urllib.request.Request(  # noqa: S310 - a local URL
        standin.base_url + path,
        json.dumps(body or {}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def rule(
    *,
    owner: User,
    recipients: list[tuple[User, int]],
    platform_fee_bps: int = 1000,
    stripe_fee_bearer: str = "platform",
    dispute_loss_bearer: str = "platform",
) -> SplitRule:
    with system_context():
        return create_split_rule(
            owner=owner,
            name=f"rule {owner.pk}",
            recipients=[{"recipient_id": str(u.pk), "share_bps": bps} for u, bps in recipients],
            platform_fee_bps=platform_fee_bps,
            stripe_fee_bearer=stripe_fee_bearer,
            dispute_loss_bearer=dispute_loss_bearer,
        )


def sell(
    standin: RunningStandin,
    *,
    amount_cents: int,
    split_rule: SplitRule | None = None,
    host: User | None = None,
    buyer: User | None = None,
    currency: str = "usd",
    book: bool = True,
) -> str:
    """A buyer pays through the stand-in; the charge is booked (as its charge.succeeded
    would); returns the charge id."""
    metadata: dict[str, str] = {}
    if split_rule is not None:
        metadata["split_rule_id"] = str(split_rule.pk)
    if host is not None:
        metadata["host_id"] = str(host.pk)
    if buyer is not None:
        metadata["buyer_id"] = str(buyer.pk)
    body = {"amount": amount_cents, "currency": currency, "metadata": metadata}
    charge_id = control(standin, "/_standin/charges", body)["latest_charge"]["id"]
    if book:
        ensure_charge_posted(charge_id=charge_id)
    return charge_id


def onboard(standin: RunningStandin, user: User) -> StripeAccount:
    """A connected account with onboarding completed."""
    with system_context():
        link = start_onboarding(user=user)
    control(standin, f"/_standin/accounts/{link.account.stripe_account_id}/complete_onboarding")
    account = sync_connected_account(stripe_account_id=link.account.stripe_account_id)
    assert account is not None and account.onboarding_status == "completed"
    return account


def events_about(api: stripe.StripeClient, object_id: str) -> list[dict[str, Any]]:
    """The stand-in's events about one object (or whose object names it), oldest first."""
    found = []
    for event in api.v1.events.list(params={"limit": 100}).data:
        data = event.to_dict()
        obj = data["data"]["object"]
        if object_id in (obj.get("id"), obj.get("charge")):
            found.append(data)
    return list(reversed(found))


def deliver(event: dict[str, Any]) -> StripeEventProcessing:
    """Hand one event to the webhook intake's exactly-once processor, as a delivery would."""
    return process_event(event=event)


def payable(user: User, currency: str = "USD") -> int:
    with system_context():
        return account_balance(code=user_code(user.pk, "payable", currency))


def held(user: User, currency: str = "USD") -> int:
    with system_context():
        return account_balance(code=user_code(user.pk, "held", currency))


def platform(currency: str = "USD") -> dict[str, int]:
    with system_context():
        return {
            name: account_balance(code=platform_code(name, currency)) for name in PLATFORM_ACCOUNTS
        }


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after}


def ledger_is_clean() -> bool:
    with system_context():
        return list(ledger_differences()) == []


def refunds_of(charge_id: str) -> list[Refund]:
    with system_context():
        return list(Refund.objects.filter(charge_id=charge_id).order_by("id"))


def reload_refund(refund: Refund | int) -> Refund:
    with system_context():
        return Refund.objects.get(pk=getattr(refund, "pk", refund))


def dispute_of(charge_id: str) -> Dispute:
    with system_context():
        return Dispute.objects.get(charge_id=charge_id)


def charge_record(charge_id: str) -> StripeCharge:
    with system_context():
        return StripeCharge.objects.get(stripe_charge_id=charge_id)


def counts() -> tuple[int, int, int]:
    """Refunds, ledger transactions and refund audit rows: what a refused request must not
    add."""
    with system_context():
        return (
            Refund.objects.count(),
            LedgerTransaction.objects.count(),
            AuditLog.objects.filter(action__startswith="refund.").count(),
        )
